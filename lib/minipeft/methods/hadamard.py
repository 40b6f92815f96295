r"""LoHa: the weight update as a Hadamard (element-wise) product of two low-rank matrices. The idea is FedPara's
(Hyeon-Woo et al. 2022, "FedPara: Low-Rank Hadamard Product for Communication-Efficient Federated Learning", §3,
Proposition 1); LyCORIS named the fine-tuning version LoHa, and Hugging Face peft implements it as ``LoHaConfig``.

    ΔW = (alpha / r) · (X1 Y1ᵀ) ⊙ (X2 Y2ᵀ)     X1, X2 (d_out × r),  Y1, Y2 (d_in × r; stored as Yᵀ, r × d_in, as peft)

         ┌──────────┐   ┌──────┐           ┌──────────┐   ┌──────┐
         │ X1 (d×r) │ @ │ Y1ᵀ  │    ⊙      │ X2 (d×r) │ @ │ Y2ᵀ  │      two rank-r matrices, multiplied
         └──────────┘   └──────┘           └──────────┘   └──────┘      entry by entry
               rank ≤ r                          rank ≤ r
                        ╲                      ╱
                         ΔW: rank ≤ r²  (Proposition 1: rank(A ⊙ B) ≤ rank(A) · rank(B))

    parameters: 2r(d_in + d_out), the price of LoRA with rank 2r, whose update has rank ≤ 2r.
    ``rank_comparison(384, 384, 8)`` measures it: LoHa reaches rank 64, LoRA 16, for the same 12,288 parameters.

Why the rank can multiply: entry (i, j) of the product is Σ_k Σ_l X1[i,k] X2[i,l] · Y1[j,k] Y2[j,l], a sum of r²
rank-one terms (the columns X1[:,k] ⊙ X2[:,l] times the rows Y1[:,k] ⊙ Y2[:,l]).

Initialisation as peft: X1, Y1, X2 kaiming-uniform (FedPara uses He initialisation), Y2 = 0, so ΔW = 0 and the
model starts as the base model. At the first step only Y2 has a gradient, X2ᵀ (G ⊙ X1 Y1ᵀ) with G = ∂L/∂ΔW (every
other gradient is multiplied by Y2 = 0); from the second step on all four factors learn.

The forward builds ΔW (d_out × d_in) and applies it, as peft does: unlike LoRA or Kronecker products, a Hadamard
product of low-rank matrices has no cheap factorised matrix-vector product (it would cost r² (d_in + d_out) per
token). peft writes its own backward (``HadaWeight``) to save memory; plain autograd computes the same gradients,
which ``tests/test_hadamard.py`` checks with gradcheck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import (LYCORIS_DEFAULTS, QUERY_VALUE, check_int, check_positive, check_rank, peft_key,
                           peft_tuner, require_linear)
from ..core.config import PeftConfig
from ..core.layers import LinearDeltaLayer


def hadamard_delta(X1: torch.Tensor, Y1: torch.Tensor, X2: torch.Tensor, Y2: torch.Tensor) -> torch.Tensor:
    """(X1 Y1ᵀ) ⊙ (X2 Y2ᵀ), with Y1, Y2 stored transposed as (r, d_in), as peft stores them."""
    return (X1 @ Y1) * (X2 @ Y2)          # (d_out, r) @ (r, d_in) -> (d_out, d_in), twice, times entry by entry


@torch.no_grad()
def rank_comparison(d_out: int, d_in: int, r: int, seed: int = 0) -> dict[str, int]:
    """Measured ranks of a random LoHa update and of a random LoRA update with the same parameter count.

    LoHa with rank r: 2r(d_in + d_out) parameters, rank min(r², d_out, d_in).
    LoRA with rank 2r: the same 2r(d_in + d_out) parameters, rank 2r.
    """
    g = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    loha = hadamard_delta(randn(d_out, r), randn(r, d_in), randn(d_out, r), randn(r, d_in))  # (d_out, d_in)
    lora = randn(d_out, 2 * r) @ randn(2 * r, d_in)                                         # (d_out, d_in)
    return {
        "params": 2 * r * (d_out + d_in),
        "loha_rank": int(torch.linalg.matrix_rank(loha)),
        "loha_bound": min(r * r, d_out, d_in),
        "lora_rank": int(torch.linalg.matrix_rank(lora)),
    }


def kaiming(p: torch.Tensor) -> None:
    nn.init.kaiming_uniform_(p, a=math.sqrt(5))  # peft's (and nn.Linear's) default


class LoHaLinear(LinearDeltaLayer):
    """y = W0 x + (alpha / r) · ((X1 Y1ᵀ) ⊙ (X2 Y2ᵀ)) x, around an nn.Linear or GPT-2's Conv1D."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float):
        super().__init__(base_layer)
        d_in, d_out = self.in_features, self.out_features
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.X1 = self.new_parameter(d_out, r, init=kaiming)   # (d_out, r)
        self.Y1 = self.new_parameter(r, d_in, init=kaiming)    # (r, d_in) = Y1ᵀ
        self.X2 = self.new_parameter(d_out, r, init=kaiming)   # (d_out, r)
        self.Y2 = self.new_parameter(r, d_in)                  # (r, d_in) = Y2ᵀ = 0: ΔW = 0 at init

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # x (B, T, d_in)
        y = self.base_layer(x)                                 # (B, T, d_out)
        if self.merged:
            return y
        return y + F.linear(x, self.delta_weight())           # (B, T, d_out)

    def delta_weight(self) -> torch.Tensor:
        return hadamard_delta(self.X1, self.Y1, self.X2, self.Y2) * self.scaling   # (d_out, d_in)

    def extra_repr(self) -> str:
        return f"r={self.r} (rank ≤ {self.r ** 2}), alpha={self.alpha}" + (", merged" if self.merged else "")


@dataclass
class LoHaConfig(PeftConfig):
    r: int = 8            # rank of each of the two factors; ΔW's rank can reach r². peft's default
    alpha: float = 8.0    # ΔW is scaled by alpha / r; peft's default (8 / 8 = 1)

    method: ClassVar[str] = "loha"
    ROLES: ClassVar[tuple[str, ...]] = QUERY_VALUE  # peft's LoHa defaults (= its LoRA defaults)

    def validate(self) -> None:
        check_int(self.r, "LoHa rank r", "r=8")
        check_positive(self.alpha, "LoHa alpha", "alpha=8")

    def wrap(self, module: nn.Module, name: str) -> LoHaLinear:
        require_linear(module, name, "LoHa")
        check_rank(self.r, module, name, why="each factor (ΔW's rank can already reach r²)")
        return LoHaLinear(module, self.r, self.alpha)

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        layers, config = peft_tuner(self, model, LoHaLinear, "LOHA", conv1d=False, r=self.r, alpha=self.alpha,
                                    **LYCORIS_DEFAULTS)
        state = {}
        for name, layer in layers.items():
            state[peft_key(name, "hada_w1_a")] = layer.X1   # (d_out, r)
            state[peft_key(name, "hada_w1_b")] = layer.Y1   # (r, d_in)
            state[peft_key(name, "hada_w2_a")] = layer.X2   # (d_out, r)
            state[peft_key(name, "hada_w2_b")] = layer.Y2   # (r, d_in)
        return config, state
