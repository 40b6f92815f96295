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

(The diagram is adapted from litgpt's ``lora.py``, Apache-2.0.)

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

from ..core.checks import (QUERY_VALUE, check_int, check_positive, check_probability, check_rank, peft_key,
                           peft_tuner, require_linear)
from ..core.config import PeftConfig
from ..core.layers import LinearDeltaLayer


class LoRALinear(LinearDeltaLayer):
    """y = W0 x + (alpha/r) · B(A(dropout(x))), around an nn.Linear or GPT-2's Conv1D (weight stored (in, out))."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False):
        super().__init__(base_layer)
        d_in, d_out = self.in_features, self.out_features
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
    layer: ClassVar[type] = LoRALinear  # what wrap() builds (DoRA's config builds its own, with the same checks)
    ROLES: ClassVar[tuple[str, ...]] = QUERY_VALUE  # W_q and W_v, as in the paper (§4.2, §7.1)

    def validate(self) -> None:
        check_int(self.r, "LoRA rank r", "r=8")
        check_positive(self.alpha, "LoRA alpha", "alpha=16, twice r")
        check_probability(self.dropout, "LoRA dropout")

    def wrap(self, module: nn.Module, name: str) -> LoRALinear:
        require_linear(module, name, "LoRA")
        check_rank(self.r, module, name)
        return self.layer(module, self.r, self.alpha, self.dropout, self.use_rslora)

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        layers, config = peft_tuner(self, model, LoRALinear, "LORA", r=self.r, lora_alpha=self.alpha,
                                    lora_dropout=self.dropout, use_rslora=self.use_rslora, bias="none")
        state = {}
        for name, layer in layers.items():
            state[peft_key(name, "lora_A.weight")] = layer.lora_A.weight  # (r, in)
            state[peft_key(name, "lora_B.weight")] = layer.lora_B.weight  # (out, r)
        return config, state
