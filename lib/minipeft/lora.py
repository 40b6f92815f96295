r"""LoRA: Low-Rank Adaptation (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", §4.1).

Freeze the pretrained weight W0 and learn its update as a product of two thin matrices, ΔW = B A:

        ┌───────────────────┐
        ┆         h         ┆          h = W0 x + (alpha / r) · B A x          (eq. 3 of the paper)
        └───────────────────┘
                  ▲
                  |
                  +
               /     \
    ┌─────────────────┐    ╭───────────────╮     initialisation:
    ┆                 ┆     \      B      /        B = 0            (so ΔW = 0: training starts at W0)
    ┆   pretrained    ┆      \   out × r  /         A = kaiming-uniform (a=√5, what peft and loralib use)
    ┆    weights W0   ┆       ╰─────────╯
    ┆    (frozen)     ┆       |    r    |        r ≪ min(in, out): the rank of the update
    ┆   out × in      ┆       | ◀─────▶ |
    ┆                 ┆       ╭─────────╮        trainable per matrix: r · (in + out)
    └─────────────────┘      /     A     \       instead of in · out
              ▲             /    r × in   \
               \           ╰───────────────╯
                \                ▲
                 \              /
                  \            /
        ┌───────────────────┐
        ┆         x         ┆
        └───────────────────┘

The scale alpha / r keeps the update's size roughly independent of r, so a learning rate tuned for one rank
works for another (§4.1: "we simply set alpha to the first r we try and do not tune it"). rsLoRA (Kalajdzievski
2023) argues the right normaliser is √r, not r: with alpha / r large ranks learn too slowly.

After training, ΔW can be folded into W0 (``minipeft.merge``): the merged model is exactly as fast as the base.
The paper adapts only W_q and W_v (§7.1 finds this the best use of a fixed budget); so do the defaults here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .inject import PeftConfig, PeftLayer, default_targets, peft_layers


class LoRALinear(PeftLayer):
    """y = W0 x + (alpha/r) · B(A(dropout(x))), around an nn.Linear or GPT-2's Conv1D (weight stored (in, out))."""

    mergeable = True

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0,
                 use_rslora: bool = False, name: str = "layer"):
        super().__init__(base_layer)
        d_in, d_out = self.in_features, self.out_features
        if r > min(d_in, d_out):
            raise ValueError(f"r={r} is too large for {name!r}: its weight is {d_out}×{d_in}, so the rank of "
                             f"ΔW is at most {min(d_in, d_out)}. Pick r ≤ {min(d_in, d_out)}.")
        self.r, self.alpha = r, alpha
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        w = base_layer.weight
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(d_in, r, bias=False, device=w.device, dtype=w.dtype)   # A: (r, in)
        self.lora_B = nn.Linear(r, d_out, bias=False, device=w.device, dtype=w.dtype)  # B: (out, r)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # ΔW = B A = 0 at init: the wrapped model starts as the base model

    def forward(self, x: torch.Tensor) -> torch.Tensor:           # x (B, T, in)
        y = self.base_layer(x)                                     # (B, T, out)   W0 x + b
        if self.merged:                                            # ΔW already lives inside W0
            return y
        h = self.lora_A(self.lora_dropout(x))                      # (B, T, r)
        return y + self.lora_B(h) * self.scaling                   # (B, T, out)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling  # (out, r) @ (r, in) -> (out, in)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}" + (", merged" if self.merged else "")


@dataclass
class LoRAConfig(PeftConfig):
    r: int = 8              # the paper finds r as small as 1-8 enough for W_q, W_v (§7.2); 8 is peft's default
    alpha: float = 16       # alpha / r = 2, the usual rule of thumb; §4.1 sets alpha to the first r tried
    dropout: float = 0.0    # dropout on the input of A only; the paper uses 0.1 for GPT-2, 0 is peft's default
    use_rslora: bool = False  # rsLoRA: scale alpha / √r instead of alpha / r (better for large r)

    method: ClassVar[str] = "lora"
    DEFAULT_TARGETS: ClassVar[dict[str, list[str]]] = {
        "bert": ["query", "value"],     # W_q and W_v, as in the paper (§4.2, §7.1)
        "llama": ["q_proj", "v_proj"],
        "gpt2": ["c_attn"],             # GPT-2 computes q, k, v with one fused Conv1D
    }

    def validate(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer (e.g. r=8), got {self.r!r}.")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be a positive number (e.g. alpha=16, twice r), got {self.alpha!r}.")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout is a probability in [0, 1) (e.g. 0.1), got {self.dropout!r}.")

    def wrap(self, module: nn.Module, name: str) -> LoRALinear:
        if not (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"):
            linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)][:4]
            hint = f" (its linear layers: {linears})" if linears else ""
            raise TypeError(f"LoRA wraps nn.Linear (or GPT-2's Conv1D) layers, but {name!r} is of type "
                            f"{type(module).__name__}{hint}. Target the linear layers themselves, "
                            "e.g. targets=['query', 'value'].")
        return LoRALinear(module, self.r, self.alpha, self.dropout, self.use_rslora, name)

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        layers = {n: m for n, m in peft_layers(model).items() if isinstance(m, LoRALinear)}
        config = {
            "peft_type": "LORA",
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "use_rslora": self.use_rslora,
            # same matching rules as peft (exact / "." suffix / regex fullmatch), so the spec carries over as is
            "target_modules": self.targets if self.targets is not None else default_targets(self, model),
            "fan_in_fan_out": any(m.transposed for m in layers.values()),  # GPT-2's Conv1D stores W as (in, out)
            "bias": "none",
            "task_type": None,
        }
        state = {}
        for name, layer in layers.items():
            state[f"base_model.model.{name}.lora_A.weight"] = layer.lora_A.weight  # (r, in)
            state[f"base_model.model.{name}.lora_B.weight"] = layer.lora_B.weight  # (out, r)
        return config, state
