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
from dataclasses import dataclass, field, fields
from typing import ClassVar, Iterable

import torch
from torch import nn


@dataclass
class PeftConfig:
    """Fields every method shares. Subclasses add their hyper-parameters (r, alpha, bottleneck, length...)."""

    targets: str | list[str] | None = None  # None -> the method's default for this architecture (DEFAULT_TARGETS)
    modules_to_save: list[str] = field(default_factory=list)  # extra modules trained in full, e.g. ["head"]

    method: ClassVar[str] = "base"  # short name, used in saved adapters and error messages
    # default targets per model_type (config.model_type of the backbone); methods override
    DEFAULT_TARGETS: ClassVar[dict[str, str | list[str]]] = {}  # a value may also be one regex string
    uses_targets: ClassVar[bool] = True  # False for methods that wrap nothing (prompt tuning, BitFit)

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
