"""The ONE injection mechanism every method shares: resolve targets -> prepare -> wrap -> attach -> freeze.

It knows nothing about any particular method. A method brings two things:

    a config   (a dataclass subclassing ``PeftConfig``, core/config.py)  says WHERE (targets) and HOW MUCH
    a layer    (an ``nn.Module`` subclassing ``PeftLayer``, core/layers.py) wraps one base module, adds the update

                    before                                   after inject(model, LoRAConfig(targets=["query"]))
        encoder.layer.0.attention.self.query      encoder.layer.0.attention.self.query = LoRALinear(
                 nn.Linear(384, 384)                   base_layer = nn.Linear(384, 384)   # frozen W0
                                                       lora_A, lora_B                       # trainable
                                                   )

Methods that change the model as a whole (soft prompts, BitFit) override ``PeftConfig.attach`` and/or
``PeftConfig.extra_trainable`` instead of (or besides) ``wrap``. After inject, exactly these are trainable:
the parameters of every ``PeftLayer`` outside its ``base_layer``, every ``PeftModule``, the config's
``extra_trainable`` parameters, and ``modules_to_save`` (e.g. a classifier head).
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from .config import PeftConfig
from .layers import PeftLayer, PeftModule
from .targets import default_targets, get_parent, resolve_targets


def inject(model: nn.Module, config: PeftConfig) -> nn.Module:
    """Add the method described by ``config`` to ``model`` in place, freeze everything else, return the model.

    Nothing is changed if the config or its targets are invalid (all checks run before the first edit).
    Calling inject twice with different configs combines methods (e.g. prefix + adapters, as in MAM).
    """
    if not isinstance(config, PeftConfig):
        raise TypeError(f"inject() takes a minipeft config (LoRAConfig(...), ...), not {type(config).__name__}.")
    config.check_types()
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
        parent, child = get_parent(model, name)
        layer.train(getattr(parent, child).training)  # a new module starts in train mode: follow the one it replaces
        setattr(parent, child, layer)
    config.attach(model)

    configs = list(getattr(model, "minipeft_configs", []))
    configs.append(config)
    model.minipeft_configs = configs  # plain attribute: remembered for save/merge/export
    model.minipeft_modules_to_save = sorted(set(getattr(model, "minipeft_modules_to_save", [])) | set(save))
    mark_trainable(model)
    return model


def peft_module_parameter_ids(model: nn.Module) -> set[int]:
    """ids of the parameters the PEFT modules own (a layer's own, never its base_layer's)."""
    chosen: set[int] = set()
    for module in model.modules():
        if isinstance(module, PeftLayer):
            chosen |= {id(p) for _, p in module.peft_named_parameters()}
        elif isinstance(module, PeftModule):
            chosen |= {id(p) for p in module.parameters()}
    return chosen


def peft_parameter_names(model: nn.Module) -> list[str]:
    """Full names of the PEFT parameters (see the module docstring): what inject trains and save_adapter saves."""
    chosen = peft_module_parameter_ids(model)  # by id: a tied tensor is one parameter however many names it has
    params = dict(model.named_parameters())
    for config in getattr(model, "minipeft_configs", []):
        chosen |= {id(params[name]) for name in config.extra_trainable(model)}
    for name in getattr(model, "minipeft_modules_to_save", []):
        chosen |= {id(p) for p in model.get_submodule(name).parameters()}
    return [name for name, p in model.named_parameters() if id(p) in chosen]


def peft_buffer_names(model: nn.Module) -> list[str]:
    """Full names of the persistent buffers of PEFT layers (outside their base layer): state that is learned but not
    trained by gradient, such as AdaLoRA's mask of kept triplets. save_adapter saves them with the parameters."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, PeftLayer):
            params = {n for n, _ in module.named_parameters()}
            names += [f"{prefix}.{n}" for n in module.state_dict(keep_vars=True)
                      if not n.startswith("base_layer.") and n not in params]
    return names


def mark_trainable(model: nn.Module) -> None:
    """Freeze everything, then unfreeze exactly the PEFT parameters (see the module docstring)."""
    names = set(peft_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)


def peft_layers(model: nn.Module, kind: type = PeftLayer) -> dict[str, PeftLayer]:
    """Every PeftLayer in the model (or every layer of one ``kind``, e.g. LoRALinear), by full name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, kind)}


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
    for layer in layers.values():  # an int8 base layer (minipeft.quantize): refused before anything changes
        layer.refuse_quantized_merge()
    for name, layer in layers.items():
        layer.merge()
        parent, child = get_parent(model, name)
        setattr(parent, child, layer.base_layer)
    # an ordinary model now: nothing left for save_adapter / export_peft (modules_to_save stay in place, trained);
    # what was merged is remembered, so that serving many users on top of it (AdapterBank) can refuse
    merged = [c.method for c in getattr(model, "minipeft_configs", [])]
    for attr in ("minipeft_configs", "minipeft_modules_to_save"):
        model.__dict__.pop(attr, None)
    model.minipeft_merged = [*getattr(model, "minipeft_merged", []), *merged]
    return model


@contextmanager
def disabled(model: nn.Module):
    """Inside the block the model IS its base model: every PEFT layer is swapped for the layer it wraps and every soft
    prompt is switched off; all come back afterwards, trained values untouched. (peft: ``disable_adapter()``.)

        with torch.no_grad(), minipeft.disabled(model):
            reference = model(**batch).logits          # DPO's reference model: the same network, adapter off

    Refused, before anything changes, where the base model is no longer there to switch to: a merged layer (its ΔW
    is inside W0), or parameters trained in place (BitFit's biases, a modules_to_save head)."""
    layers = peft_layers(model)
    prompts = [m for m in model.modules() if getattr(m, "_minipeft_prompt_hook", None) is not None]
    merged = [n for n, layer in layers.items() if layer.merged]
    inside = tuple(n + "." for n in layers)
    peft_owned = peft_module_parameter_ids(model)
    in_place = [n for n, p in model.named_parameters()
                if p.requires_grad and not n.startswith(inside) and id(p) not in peft_owned]
    if not getattr(model, "minipeft_configs", None):
        raise ValueError("This model has no PEFT layers or prompts to switch off: inject(model, config) first.")
    if merged:
        raise ValueError(f"{merged[:2]} are merged (ΔW is inside W0): unmerge them first, then switch them off.")
    if in_place:
        raise ValueError(f"{in_place[:3]} are the model's own parameters, trained in place (BitFit, modules_to_save): "
                         "switching the adapters off would keep them, so there is no base model to switch to.")
    swapped = []
    try:
        for name, layer in sorted(layers.items(), key=lambda item: -len(item[0])):  # a layer inside a layer first
            parent, child = get_parent(model, name)
            setattr(parent, child, layer.base_layer)
            swapped.append((parent, child, layer))
        for m in prompts:
            m.minipeft_disabled = True
        yield model
    finally:
        for parent, child, layer in reversed(swapped):
            setattr(parent, child, layer)
        for m in prompts:
            m.minipeft_disabled = False
