"""The ONE injection mechanism every method shares: resolve targets -> wrap -> attach -> freeze.

It knows nothing about any particular method. A method brings two things:

    a config   (a dataclass subclassing ``PeftConfig``)  says WHERE (targets) and HOW MUCH (r, m, n, ...)
    a layer    (an ``nn.Module`` subclassing ``PeftLayer``) wraps one base module and adds the update

                    before                                   after inject(model, LoRAConfig(targets=["query"]))
        encoder.layer.0.attention.self.query      encoder.layer.0.attention.self.query = LoRALinear(
                 nn.Linear(384, 384)                   base_layer = nn.Linear(384, 384)   # frozen W0
                                                       lora_A, lora_B                       # trainable
                                                   )

Methods that change the model as a whole (soft prompts, BitFit) override ``PeftConfig.attach`` and/or
``PeftConfig.extra_trainable`` instead of (or besides) ``wrap``. After inject, exactly these are trainable:
the parameters of every ``PeftLayer`` outside its ``base_layer``, every ``PeftModule``, the config's
``extra_trainable`` parameters, and ``modules_to_save`` (e.g. a classifier head).

Target syntax (the same as Hugging Face peft, so peft users feel at home):
    a list of strings  -> each matches a module whose full name equals it or ends with "." + it
    a single string    -> a regular expression that must match the whole module name (re.fullmatch)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Iterable

import torch
from torch import nn


# --------------------------------------------------------------------------------------------- base classes
class PeftModule(nn.Module):
    """Marker: every parameter of this module is a PEFT parameter (prompt encoders, prefix tables...)."""


class PeftLayer(PeftModule):
    """A PEFT layer WRAPS its base layer (kept as ``self.base_layer``, frozen) instead of subclassing it.

    Additive methods (LoRA, LoHa, LoKr, KronA, ...) implement ``delta_weight()`` (shape of an nn.Linear
    weight: (out, in)) and set ``mergeable = True``: this one function then drives ``merge`` and ``unmerge``.
    """

    mergeable: ClassVar[bool] = False

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.merged = False

    # -- the geometry of the base layer, for nn.Linear and GPT-2's Conv1D (weight stored transposed)
    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def transposed(self) -> bool:
        return type(self.base_layer).__name__ == "Conv1D"

    @property
    def in_features(self) -> int:
        w = self.base_layer.weight
        return w.shape[0] if self.transposed else w.shape[1]

    @property
    def out_features(self) -> int:
        w = self.base_layer.weight
        return w.shape[1] if self.transposed else w.shape[0]

    def peft_named_parameters(self):
        """This layer's own parameters, i.e. everything outside base_layer."""
        for name, p in self.named_parameters():
            if not name.startswith("base_layer."):
                yield name, p

    # -- merge / unmerge, driven by delta_weight()
    def delta_weight(self) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} has no weight-space update: it cannot be merged.")

    @torch.no_grad()
    def merge(self) -> None:
        if not self.mergeable:
            raise TypeError(f"{type(self).__name__} cannot be merged into its base layer.")
        if self.merged:
            return
        delta = self.delta_weight()
        self.base_layer.weight.data += (delta.T if self.transposed else delta).to(self.base_layer.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        delta = self.delta_weight()
        self.base_layer.weight.data -= (delta.T if self.transposed else delta).to(self.base_layer.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return "merged" if self.merged else ""


@dataclass
class PeftConfig:
    """Fields every method shares. Subclasses add their hyper-parameters (r, alpha, bottleneck, length...)."""

    targets: str | list[str] | None = None  # None -> the method's default for this architecture (see DEFAULT_TARGETS)
    modules_to_save: list[str] = field(default_factory=list)  # extra modules trained in full, e.g. ["head"]

    method: ClassVar[str] = "base"  # short name, used in saved adapters and error messages
    # default targets per model_type (config.model_type of the backbone); methods override
    DEFAULT_TARGETS: ClassVar[dict[str, str | list[str]]] = {}  # a value may also be one regex string

    # -- what a method implements
    def validate(self) -> None:
        """Raise ValueError/TypeError on bad hyper-parameters (called by inject before touching the model)."""

    def prepare(self, model: nn.Module) -> None:
        """Look at the whole model once, after targets are resolved and before anything is wrapped (IA3 looks up
        its default feed-forward modules, BitFit checks that biases exist). Must not modify the model."""

    def wrap(self, module: nn.Module, name: str) -> nn.Module:
        """Return the PeftLayer that replaces ``module`` (called once per matched target)."""
        raise NotImplementedError(f"{type(self).__name__} does not wrap modules")

    def attach(self, model: nn.Module) -> None:
        """Model-level change after wrapping (soft prompts, hooks). Default: nothing."""

    def extra_trainable(self, model: nn.Module) -> Iterable[str]:
        """Names of existing parameters to unfreeze (BitFit's biases, Houlsby's LayerNorms). Default: none."""
        return ()

    uses_targets: ClassVar[bool] = True  # False for methods that wrap nothing (prompt tuning, BitFit)

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        """(adapter_config.json dict, adapter_model.safetensors state) in Hugging Face peft's format.
        Implemented by every method that peft also has; used by minipeft.export_peft."""
        raise TypeError(f"Hugging Face peft has no equivalent of {type(self).__name__}: it cannot be exported.")

    # -- shared helpers
    REGISTRY: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "method" in cls.__dict__:  # every concrete config declares its own short name
            PeftConfig.REGISTRY[cls.method] = cls

    def to_dict(self) -> dict:
        return {"method": self.method, **asdict(self)}

    @staticmethod
    def from_dict(data: dict) -> "PeftConfig":
        data = dict(data)
        method = data.pop("method", None)
        if method not in PeftConfig.REGISTRY:
            raise ValueError(f"Unknown PEFT method {method!r}; known: {sorted(PeftConfig.REGISTRY)}.")
        return PeftConfig.REGISTRY[method](**data)


# --------------------------------------------------------------------------------------------- target resolution
def model_type(model: nn.Module) -> str | None:
    """config.model_type of a transformers model, also when it sits inside a wrapper such as a classifier."""
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and getattr(cfg, "model_type", None):
            return cfg.model_type
    return None


def _matches(name: str, targets: str | list[str]) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def describe_modules(model: nn.Module, limit: int = 40) -> str:
    """A compact list of the module names a student can target: leaf names with their type and count."""
    counts = Counter()
    for name, module in model.named_modules():
        if name and not list(module.children()):
            counts[(name.rsplit(".", 1)[-1], type(module).__name__)] += 1
    rows = [f"{leaf} ({kind} x{n})" for (leaf, kind), n in sorted(counts.items())]
    more = f", ... ({len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(rows[:limit]) + more


def resolve_targets(model: nn.Module, targets: str | list[str], what: str = "targets") -> list[str]:
    """Full names of the modules matched by ``targets``; a clear error when a pattern matches nothing."""
    if isinstance(targets, (list, tuple)):
        if not targets:
            raise ValueError(f"{what} is empty: name at least one module, e.g. ['query', 'value'].")
        bad = [t for t in targets if not isinstance(t, str) or not t]
        if bad:
            raise TypeError(f"{what} must be module names (strings); got {bad!r}.")
        dupes = [t for t, n in Counter(targets).items() if n > 1]
        if dupes:
            raise ValueError(f"{what} names {dupes} more than once: each module can be targeted only once.")
    elif not isinstance(targets, str):
        raise TypeError(f"{what} must be a list of module names or a regex string, not {type(targets).__name__}.")
    names = [n for n, _ in model.named_modules() if n and _matches(n, targets)]
    # never descend into a wrapper's own base_layer / sub-modules
    names = [n for n in names if ".base_layer" not in n]
    unmatched = [t for t in ([targets] if isinstance(targets, str) else targets)
                 if not any(_matches(n, t if isinstance(targets, str) else [t]) for n in names)]
    if unmatched:
        raise ValueError(
            f"{what} {unmatched} matched no module of this {type(model).__name__}. "
            f"Modules that exist: {describe_modules(model)}."
        )
    return names


def _get_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def default_targets(config: PeftConfig, model: nn.Module) -> str | list[str]:
    kind = model_type(model)
    if kind in config.DEFAULT_TARGETS:
        targets = config.DEFAULT_TARGETS[kind]  # a list of names, or one regex (same syntax as config.targets)
        return targets if isinstance(targets, str) else list(targets)
    known = ", ".join(sorted(config.DEFAULT_TARGETS)) or "none"
    raise ValueError(
        f"{type(config).__name__} has no default targets for model_type={kind!r} (known: {known}). "
        f"Pass targets=[...]; modules that exist: {describe_modules(model)}."
    )


# --------------------------------------------------------------------------------------------- inject / freeze
def inject(model: nn.Module, config: PeftConfig) -> nn.Module:
    """Add the method described by ``config`` to ``model`` in place, freeze everything else, return the model.

    Nothing is changed if the config or its targets are invalid (all checks run before the first edit).
    Calling inject twice with different configs combines methods (e.g. prefix + adapters, as in MAM).
    """
    if not isinstance(config, PeftConfig):
        raise TypeError(f"inject() takes a minipeft config (LoRAConfig(...), ...), not {type(config).__name__}.")
    config.validate()

    names: list[str] = []
    if config.uses_targets:
        targets = config.targets if config.targets is not None else default_targets(config, model)
        names = resolve_targets(model, targets)
        already = [n for n in names if isinstance(model.get_submodule(n), PeftLayer)]
        if already:
            raise ValueError(
                f"{already[:3]} already carry a PEFT layer: the same module cannot be targeted twice. "
                "Start from a fresh model, or target other modules."
            )
    save = resolve_targets(model, config.modules_to_save, "modules_to_save") if config.modules_to_save else []
    config.prepare(model)  # may raise: nothing edited yet

    wrapped = {name: config.wrap(model.get_submodule(name), name) for name in names}  # may raise: nothing edited yet
    for name, layer in wrapped.items():
        parent, child = _get_parent(model, name)
        layer.train(getattr(parent, child).training)  # a new module starts in train mode: follow the one it replaces
        setattr(parent, child, layer)
    config.attach(model)

    configs = list(getattr(model, "minipeft_configs", []))
    configs.append(config)
    model.minipeft_configs = configs  # plain attribute: remembered for save/merge/export
    model.minipeft_modules_to_save = sorted(set(getattr(model, "minipeft_modules_to_save", [])) | set(save))
    mark_trainable(model)
    return model


def peft_parameter_names(model: nn.Module) -> list[str]:
    """Full names of the PEFT parameters (see the module docstring): what inject trains and save_adapter saves."""
    chosen: set[int] = set()  # by id: a tied tensor is one parameter however many names it has
    for module in model.modules():
        if isinstance(module, PeftLayer):
            chosen |= {id(p) for _, p in module.peft_named_parameters()}
        elif isinstance(module, PeftModule):
            chosen |= {id(p) for p in module.parameters()}
    params = dict(model.named_parameters())
    for config in getattr(model, "minipeft_configs", []):
        chosen |= {id(params[name]) for name in config.extra_trainable(model)}
    for name in getattr(model, "minipeft_modules_to_save", []):
        chosen |= {id(p) for p in model.get_submodule(name).parameters()}
    return [name for name, p in model.named_parameters() if id(p) in chosen]


def mark_trainable(model: nn.Module) -> None:
    """Freeze everything, then unfreeze exactly the PEFT parameters (see the module docstring)."""
    names = set(peft_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)


def peft_layers(model: nn.Module) -> dict[str, PeftLayer]:
    """Every PeftLayer in the model, by full name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PeftLayer)}


def merge(model: nn.Module) -> nn.Module:
    """Fold every ΔW into its base weight and put the plain base layers back: the result is an ordinary model,
    as fast as the original at inference. Raises (and changes nothing) if any injected method cannot merge."""
    layers = peft_layers(model)
    inside_layer = tuple(name + "." for name in layers)
    others = [m for n, m in model.named_modules()  # soft prompts, prefix tables: PEFT modules outside any layer
              if isinstance(m, PeftModule) and not isinstance(m, PeftLayer) and not n.startswith(inside_layer)]
    if not layers and not others:
        methods = [c.method for c in getattr(model, "minipeft_configs", [])]
        why = (f"{methods} train the model's own parameters in place: it is already an ordinary model"
               if methods else "call minipeft.inject(model, config) first")
        raise ValueError(f"This model has no PEFT layers to merge: {why}.")
    cannot = sorted({type(m).__name__ for m in [*layers.values(), *others] if not getattr(m, "mergeable", False)})
    if cannot:  # checked for every module before the first merge: a refused merge changes nothing
        raise TypeError(f"{', '.join(cannot)} cannot be merged (no weight-space update); only ΔW methods such as "
                        "LoRA and IA3 merge. Keep the adapter layers for inference instead.")
    for name, layer in layers.items():
        layer.merge()
        parent, child = _get_parent(model, name)
        setattr(parent, child, layer.base_layer)
    # an ordinary model now: nothing left for save_adapter / export_peft (modules_to_save stay in place, trained)
    for attr in ("minipeft_configs", "minipeft_modules_to_save"):
        model.__dict__.pop(attr, None)
    return model
