"""``PeftConfig``: what every method's config shares, and the registry that turns a saved dict back into a config.

A method brings a dataclass subclassing PeftConfig: WHERE (``targets``) and HOW MUCH (r, m, n, ...), plus the hooks
``inject`` calls in this order, each before anything is edited except the last two:

    validate()  ->  prepare(model)  ->  wrap(module, name) per target  ->  [edit]  attach(model)  ->  freeze

and, for training, ``for_steps(steps)`` (the config for a run of that length) and ``fit_hooks(model, steps)`` (the loss
term and per-step hook the method needs): ``minipeft.lab.chapter.run`` applies both, so a method that needs them
(AdaLoRA) trains through the same code as every other.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
from dataclasses import dataclass, field, fields
from typing import ClassVar, Iterable

import torch
from torch import nn


# --------------------------------------------------------------------------------------------- peft's names
# a peft user types peft's field names: each one here gets an error that names minipeft's field (docs/peft.md shows
# this table). A value is the minipeft field, or {method: field} where it depends on the method.
PEFT_NAMES: dict[str, str | dict[str, str]] = {
    "target_modules": "targets",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "feedforward_modules": "feedforward",
    "total_step": "total_steps",
    "deltaT": "delta_t",
    "num_virtual_tokens": "length",
    "prompt_tuning_init": "init",
    "prompt_tuning_init_text": "init_text",
    "tokenizer_name_or_path": "tokenizer",
    "encoder_reparameterization_type": "encoder",
    "encoder_hidden_size": {"ptuning": "hidden", "prefix": "projection_hidden"},
    "encoder_num_layers": "lstm_layers",
    "encoder_dropout": "dropout",
    "prefix_projection": "projection_hidden",
    "num_tasks": "tasks",
    "num_ranks": "rank",
}
# peft fields minipeft has no field for, and why
PEFT_ONLY: dict[str, str] = {
    "task_type": "minipeft needs no task type: inject works on any model, and export_peft writes peft's",
    "fan_in_fan_out": "minipeft reads it off the layer itself (GPT-2's Conv1D stores W as (in, out))",
    "bias": "to train biases use BitFitConfig (it can be stacked with another method)",
    "inference_mode": "minipeft freezes everything but the method's parameters; call model.eval() for inference",
}


def peft_name_error(cls: type, names: list[str]) -> str:
    """The message for keyword arguments ``cls`` does not have: peft's spelling -> minipeft's field, else the
    closest field names."""
    import difflib

    own = [f.name for f in fields(cls)]
    hints = []
    for name in names:
        mapped = PEFT_NAMES.get(name)
        if isinstance(mapped, dict):
            mapped = mapped.get(getattr(cls, "method", ""))
        if mapped in own:
            extra = " (an int h, or None for no projection)" if name == "prefix_projection" else ""
            hints.append(f"{name!r} is peft's name: minipeft calls it {mapped!r}{extra}")
        elif name in PEFT_ONLY:
            hints.append(f"{name!r} is a peft field: {PEFT_ONLY[name]}")
        else:
            close = difflib.get_close_matches(name, own, n=2)
            hints.append(f"{name!r} is not a field" + (f" (did you mean {' or '.join(map(repr, close))}?)"
                                                        if close else ""))
    return f"{cls.__name__}: " + "; ".join(hints) + f". Its fields: {', '.join(own)}."


@dataclass
class PeftConfig:
    """Fields every method shares. Subclasses add their hyper-parameters (r, alpha, bottleneck, length...)."""

    def __new__(cls, *args, **kwargs):
        # before the dataclass __init__ says "unexpected keyword argument": name the field a peft user meant
        unknown = [k for k in kwargs if k not in {f.name for f in fields(cls)}]
        if unknown:
            raise TypeError(peft_name_error(cls, unknown))
        return super().__new__(cls)

    targets: str | list[str] | None = None  # None -> the method's default for this architecture (DEFAULT_TARGETS)
    modules_to_save: list[str] = field(default_factory=list)  # extra modules trained in full, e.g. ["head"]

    method: ClassVar[str] = "base"  # short name, used in saved adapters and error messages
    # default targets: the parts of every Transformer block the method wraps, found in any model by recognising its
    # structure (core/arch.py): q k v qkv o ffn_in ffn_out ffn_block attention (q/k/v become a fused qkv where a
    # model has one). DEFAULT_TARGETS pins other names for a model_type (IA3 on BERT: peft's own choice).
    ROLES: ClassVar[tuple[str, ...]] = ()
    DEFAULT_TARGETS: ClassVar[dict[str, str | list[str]]] = {}  # a value may also be one regex string
    uses_targets: ClassVar[bool] = True  # False for methods that wrap nothing (prompt tuning, BitFit)

    # -- checked for every method before its own validate(): the types its fields declare
    def check_types(self) -> None:
        """What no method's ``validate`` should have to repeat, read off the dataclass annotations:

        * a ``bool`` field holds True or False (``use_rslora="no"`` would otherwise switch rsLoRA ON: "no" is truthy);
        * an ``int`` field takes any integer (``np.int64(8)`` too) and stores a Python int (JSON can save it);
        * a ``float`` field holds a finite number: NaN and ±inf pass every ``x <= 0`` test, then poison every output;
        * a ``list[int]`` field takes any iterable of integers (``range(2)``) and stores a list;
        * and the whole config must be JSON-serialisable, so that ``save_adapter`` cannot fail half-way later."""
        for f in fields(self):
            value, kind = getattr(self, f.name), str(f.type).replace(" | None", "")
            if value is None and " | None" in str(f.type):
                continue
            where = f"{type(self).__name__}.{f.name}"
            if kind == "bool" and not isinstance(value, bool):
                raise TypeError(f"{where} must be True or False, got {value!r}"
                                + (" (a string: every non-empty string counts as True)" if isinstance(value, str) else "")
                                + ".")
            if kind == "int" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
                setattr(self, f.name, int(value))
            if kind == "float":
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise TypeError(f"{where} must be a number, got {value!r}.")
                if not math.isfinite(value):
                    raise ValueError(f"{where} must be a finite number, got {value!r}: NaN or inf would make every "
                                     "output of the adapted model NaN.")
                if not isinstance(value, (int, float)):
                    setattr(self, f.name, float(value))                  # np.float32(2.0) -> 2.0
            if kind == "list[int]" and not isinstance(value, (str, bytes, dict)):
                try:
                    items = list(value)
                except TypeError:
                    continue                                             # not iterable: the method's validate says
                if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
                    setattr(self, f.name, [int(v) for v in items])       # range(2) -> [0, 1]
        try:
            json.dumps(self.to_dict())
        except (TypeError, ValueError) as err:
            bad = [name for name, value in self.to_dict().items() if not _json_ok(value)]
            raise TypeError(f"{type(self).__name__} cannot be saved: field(s) {bad} hold values JSON cannot store "
                            f"({err}). Use plain numbers, strings and lists.") from None

    def restrict_defaults(self, names: list[str]) -> list[str]:
        """The default target modules (full names) this config keeps: all of them, unless a method restricts
        them (AdapterConfig(layers=[...]) keeps those layers')."""
        return names

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
        """Model-level change after wrapping (soft prompts, a shared prefix table). Default: nothing."""

    def extra_trainable(self, model: nn.Module) -> Iterable[str]:
        """Names of existing parameters to unfreeze (BitFit's biases, Houlsby's LayerNorms). Default: none."""
        return ()

    # -- what a method needs from the training run (minipeft.lab.chapter.run and the reference runs call these)
    def for_steps(self, steps: int) -> "PeftConfig":
        """This config for a run of ``steps`` optimizer steps (AdaLoRA's budget schedule must end with the run).
        Default: the config itself; most methods do not care how long they train."""
        return self

    def fit_hooks(self, model: nn.Module, steps: int) -> dict:
        """The hooks of ``minipeft.lab.train.fit`` (``extra_loss``, ``after_step``) that a model carrying this config
        needs for a run of ``steps`` optimizer steps (AdaLoRA: its orthogonality penalty and its budget allocator).
        Default: none."""
        return {}

    def for_loading(self) -> "PeftConfig":
        """This config as ``load_adapter`` injects it before copying the saved tensors in: the same shapes, but
        no initialisation that needs something outside the file (prompt tuning's init from a tokenizer's text).
        Default: the config itself."""
        return self

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        """(adapter_config.json dict, adapter_model.safetensors state) in Hugging Face peft's format.
        Implemented by every method that peft also has; used by minipeft.export_peft."""
        raise TypeError(f"Hugging Face peft has no equivalent of {type(self).__name__}: it cannot be exported.")

    # -- the registry: save_adapter writes to_dict(), load_adapter reads it back with from_dict()
    REGISTRY: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "method" in cls.__dict__:  # every concrete config declares its own short name
            PeftConfig.REGISTRY[cls.method] = cls

    def to_dict(self) -> dict:
        """JSON-safe: an object field (a prompt init's tokenizer) is stored as its name/path."""
        data = {"method": self.method}
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (type(None), str, int, float, bool, list, tuple, dict)):
                value = getattr(value, "name_or_path", None)
            data[f.name] = copy.deepcopy(value)
        return data

    @staticmethod
    def from_dict(data: dict) -> "PeftConfig":
        data = dict(data)
        method = data.pop("method", None)
        if method not in PeftConfig.REGISTRY:
            raise ValueError(f"Unknown PEFT method {method!r}; known: {sorted(PeftConfig.REGISTRY)}.")
        return PeftConfig.REGISTRY[method](**data)


def _json_ok(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
