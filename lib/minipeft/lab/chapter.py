"""What every chapter's live experiment does, written once: a fresh classifier over a copy of the frozen encoder,
a method injected (or only the head trained, or everything), one training run.

    model = chapter.classifier(encoder, mp.LoRAConfig(r=8), seed=0)          # ready to train
    model, result = chapter.run(encoder, tok, train_ds, eval_ds, mp.LoRAConfig(r=8), train.TrainConfig(lr=3e-3))
    chapter.majority_accuracy(eval_ds["label"])                               # the bar every run must clear
    chapter.run(encoder, tok, train_ds, eval_ds, mp.AdaLoRAConfig(tinit=3, tfinal=5), config)   # schedule + hooks set

``method`` is a minipeft config (its method is injected; the new head always trains with it), ``"head"`` (a probe
trained through the loop: only the head learns), ``"layernorm"`` (every LayerNorm's gain and bias and the head:
the part of Houlsby's recipe that is not an adapter), ``"top"`` (the top encoder layer and the head) or ``"full"``
(full fine-tuning). Same seed -> same numbers: the seed
fixes the head's initialisation and the method's random init, then ``fit`` fixes the data order with the same seed.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import replace

import torch
from torch import nn

from ..core.checks import norm_parameter_names
from ..core.config import PeftConfig
from ..core.inject import inject
from .train import MeanPoolClassifier, TrainConfig, TrainResult, fit, planned_steps

HEAD = "head"  # MeanPoolClassifier's classification layer
METHODS = ("head", "layernorm", "top", "full")


def majority_accuracy(labels) -> float:
    """Accuracy of always predicting the most frequent label: the bar every run must clear."""
    labels = list(labels)
    if not labels:
        raise ValueError("majority_accuracy needs at least one label.")
    return Counter(labels).most_common(1)[0][1] / len(labels)


def train_head_only(model: nn.Module) -> nn.Module:
    """Freeze everything but the classification head (a linear probe trained through the loop)."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] == HEAD)
    return model


def train_layernorms(model: nn.Module) -> nn.Module:
    """Freeze everything but the head and every LayerNorm of the encoder (Houlsby §2.1 trains these with the
    adapters; alone they are a baseline: 2 x 2d numbers per layer, 9,216 in MiniLM, plus the head)."""
    norms = set(norm_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in norms or name.split(".")[0] == HEAD)
    return model


def train_top_layers(model: nn.Module, k: int = 1) -> nn.Module:
    """Freeze everything but the top ``k`` encoder layers and the head: the simplest lightweight fine-tuning."""
    n_layers = model.encoder.config.num_hidden_layers
    if not 1 <= k <= n_layers:
        raise ValueError(f"k must be between 1 and the number of layers ({n_layers}), got {k}.")
    top = tuple(f"encoder.encoder.layer.{i}." for i in range(n_layers - k, n_layers))
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] == HEAD or name.startswith(top))
    return model


def head_parameters(model: nn.Module) -> int:
    """The number of parameters in the classification head (part of every run's trainable count)."""
    return sum(p.numel() for p in model.get_submodule(HEAD).parameters())


def classifier(encoder: nn.Module, method: PeftConfig | list[PeftConfig] | str = "head", *, seed: int = 0,
               num_labels: int = 2) -> MeanPoolClassifier:
    """A fresh MeanPoolClassifier over a deep copy of ``encoder`` (the original is never touched), ready to train.

    ``method`` may be a list of configs: each is injected in turn (He et al.'s MAM adapter = [PrefixConfig(...),
    AdapterConfig(kind="parallel", scaling=4)]), and every part trains."""
    if isinstance(method, (list, tuple)):
        if not method or not all(isinstance(m, PeftConfig) for m in method):
            raise ValueError(f"a combined method is a non-empty list of minipeft configs, got {method!r}.")
        model = classifier(encoder, method[0], seed=seed, num_labels=num_labels)
        for part in method[1:]:
            inject(model, part)
        return model
    if not isinstance(method, PeftConfig) and method not in METHODS:
        raise ValueError(f"method must be a minipeft config (e.g. mp.LoRAConfig(r=8)), a list of them, or one of "
                         f"{list(METHODS)}, got {method!r}.")
    torch.manual_seed(seed)                      # same head init (and method init) for the same seed
    model = MeanPoolClassifier(copy.deepcopy(encoder), num_labels=num_labels)
    if method == "head":
        return train_head_only(model)
    if method == "layernorm":
        return train_layernorms(model)
    if method == "top":
        return train_top_layers(model)
    if method == "full":
        return model.requires_grad_(True)
    if HEAD not in method.modules_to_save:       # a new head is random: it always trains with the method
        method = replace(method, modules_to_save=[*method.modules_to_save, HEAD])
    return inject(model, method)


def method_hooks(model: nn.Module, steps: int, extra_loss=None, after_step=None) -> dict:
    """The ``fit`` hooks for a run of ``steps`` optimizer steps: those the methods on ``model`` need (each config's
    ``fit_hooks``: AdaLoRA's orthogonality penalty and budget allocator), then the caller's own (a recorder runs
    after the method's step, so it sees the budget just allocated). Several hooks of one kind are combined: the
    losses added, the step hooks called in turn."""
    losses, steps_hooks = [], []
    for config in getattr(model, "minipeft_configs", []):
        hooks = config.fit_hooks(model, steps)
        losses += [hooks["extra_loss"]] if "extra_loss" in hooks else []
        steps_hooks += [hooks["after_step"]] if "after_step" in hooks else []
    losses += [extra_loss] if extra_loss is not None else []
    steps_hooks += [after_step] if after_step is not None else []
    out = {}
    if losses:
        out["extra_loss"] = losses[0] if len(losses) == 1 else (lambda m: sum(f(m) for f in losses))
    if steps_hooks:
        out["after_step"] = steps_hooks[0] if len(steps_hooks) == 1 else (
            lambda m, step: [f(m, step) for f in steps_hooks][-1])
    return out


def run(encoder: nn.Module, tokenizer, train_ds, eval_ds, method: PeftConfig | list[PeftConfig] | str = "head",
        config: TrainConfig | None = None, *, extra_loss=None, after_step=None
        ) -> tuple[MeanPoolClassifier, TrainResult]:
    """classifier(encoder, method, seed=config.seed), then fit: returns (trained model, TrainResult).

    The method is fitted to the run first (``method.for_steps``: AdaLoRA's schedule ends with the run) and trains with
    the hooks it needs (``method_hooks``); ``extra_loss`` / ``after_step`` add your own (e.g. a recorder)."""
    config = config or TrainConfig()
    steps = planned_steps(len(train_ds), config)
    if isinstance(method, PeftConfig):
        method = method.for_steps(steps)
    elif isinstance(method, (list, tuple)):
        method = [m.for_steps(steps) if isinstance(m, PeftConfig) else m for m in method]
    model = classifier(encoder, method, seed=config.seed)
    hooks = method_hooks(model, steps, extra_loss=extra_loss, after_step=after_step)
    return model, fit(model, tokenizer, train_ds, eval_ds, config, **hooks)
