r"""LoKr: a Kronecker-product update whose big factor is itself low-rank (LyCORIS: Yeh et al. 2024, "Navigating
Text-To-Image Customization: From LyCORIS Fine-Tuning to Model Evaluation", ICLR, the LoKr method; its reference
code is what Hugging Face peft's ``LoKrConfig`` follows, and what this file reproduces).

    ΔW = (alpha / r) · w1 ⊗ w2

        d_out = out_l · out_k    d_in = in_m · in_n        both split by factorization(d, decompose_factor):
                                                           near √d by default (384 -> 16 · 24)
        w1  (out_l × in_m)   the SMALL factor, zero at init (so ΔW = 0: the model starts as the base model)
        w2  (out_k × in_n)   the big factor, random at init (so w1 gets a gradient at once)
            = w2_a (out_k × r) @ w2_b (r × in_n)      when r < max(out_k, in_n) / 2: a low-rank factor
        w1  = w1_a (out_l × r) @ w1_b (r × in_m)      likewise, only if decompose_both=True

              x (d_in) ────────────┬──────────────────────────────┐
                                   │                              │
                      X = x as (in_m × in_n)                W0 (frozen)
                      w1 X w2ᵀ  (out_l × out_k)                   │
                      flatten, × alpha / r                        │
                                   └────────────► + ◄─────────────┘  h = W0 x + (alpha/r) (w1 ⊗ w2) x

rank(ΔW) = rank(w1) · rank(w2) ≤ min(out_l, in_m) · r: a Kronecker product multiplies ranks, so even a low-rank
w2 gives a high-rank update from few parameters.

LoKr is the KronA idea (kronecker.py: ΔW = s · A ⊗ B) with peft's conventions: which factor is small and zero, the
low-rank w2, the alpha / r scale and the factor shapes. The forward uses the same vec trick as KronA
(``kron_matvec``: never builds ΔW); peft builds ΔW = torch.kron(w1, w2) and applies it (same numbers, ~1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..core.checks import (LYCORIS_DEFAULTS, QUERY_VALUE, check_bool, check_int, check_positive, peft_key,
                           peft_tuner, require_linear)
from ..core.config import PeftConfig
from ..core.layers import LinearDeltaLayer
from .hadamard import kaiming
from .kronecker import factorization, kron_matvec


class LoKrLinear(LinearDeltaLayer):
    """y = W0 x + (alpha / r) · (w1 ⊗ w2) x, around an nn.Linear or GPT-2's Conv1D."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, decompose_factor: int, decompose_both: bool):
        super().__init__(base_layer)
        d_in, d_out = self.in_features, self.out_features
        in_m, in_n = factorization(d_in, decompose_factor)
        out_l, out_k = factorization(d_out, decompose_factor)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        new = self.new_parameter  # zeros, or filled by init=

        # w1 (out_l, in_m): zero, or low-rank w1_a @ w1_b with w1_a zero
        if decompose_both and r < max(out_l, in_m) / 2:
            self.register_parameter("w1", None)
            self.w1_a, self.w1_b = new(out_l, r), new(r, in_m, init=kaiming)    # (out_l, r), (r, in_m)
        else:
            self.w1 = new(out_l, in_m)                                          # (out_l, in_m)
            self.register_parameter("w1_a", None)
            self.register_parameter("w1_b", None)
        # w2 (out_k, in_n): full, or low-rank w2_a @ w2_b when r is small next to its size
        if r < max(out_k, in_n) / 2:
            self.register_parameter("w2", None)
            self.w2_a = new(out_k, r, init=kaiming)                             # (out_k, r)
            self.w2_b = new(r, in_n, init=kaiming)                              # (r, in_n)
        else:
            self.w2 = new(out_k, in_n, init=kaiming)                            # (out_k, in_n)
            self.register_parameter("w2_a", None)
            self.register_parameter("w2_b", None)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w1, w2), each rebuilt from its low-rank pair where it has one."""
        w1 = self.w1 if self.w1 is not None else self.w1_a @ self.w1_b      # (out_l, in_m)
        w2 = self.w2 if self.w2 is not None else self.w2_a @ self.w2_b      # (out_k, in_n)
        return w1, w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:                    # x (B, T, d_in)
        y = self.base_layer(x)                                               # (B, T, d_out)
        if self.merged:
            return y
        w1, w2 = self.factors()
        return y + kron_matvec(w1, w2, x) * self.scaling                    # (B, T, d_out)

    def delta_weight(self) -> torch.Tensor:
        w1, w2 = self.factors()
        return torch.kron(w1, w2) * self.scaling                            # (d_out, d_in)

    def extra_repr(self) -> str:
        w1, w2 = self.factors()
        low = " (low-rank)" if self.w2 is None else ""
        return (f"w1 {w1.shape[0]}×{w1.shape[1]} ⊗ w2 {w2.shape[0]}×{w2.shape[1]}{low}, scaling={self.scaling:g}"
                + (", merged" if self.merged else ""))


@dataclass
class LoKrConfig(PeftConfig):
    r: int = 8                    # rank of w2 = w2_a @ w2_b if r < max(w2's dims) / 2 (else w2 is full); peft's default
    alpha: float = 8.0            # ΔW is scaled by alpha / r; peft's default (8 / 8 = 1)
    decompose_factor: int = -1    # -1: split each dimension near √d; k > 0: use k as one factor where it divides
    decompose_both: bool = False  # also make w1 low-rank (w1_a @ w1_b) when r < max(w1's dims) / 2

    method: ClassVar[str] = "lokr"
    ROLES: ClassVar[tuple[str, ...]] = QUERY_VALUE  # peft's LoKr defaults (= its LoRA defaults)

    def validate(self) -> None:
        check_int(self.r, "LoKr rank r", "r=8")
        check_positive(self.alpha, "LoKr alpha", "alpha=8")
        if self.decompose_factor != -1:  # -1 (split near √d) or one factor's size
            check_int(self.decompose_factor, "LoKr decompose_factor", "4", meaning="-1: split near √d, or one factor's size")
        check_bool(self.decompose_both, "LoKr decompose_both")

    def wrap(self, module: nn.Module, name: str) -> LoKrLinear:
        require_linear(module, name, "LoKr")
        return LoKrLinear(module, self.r, self.alpha, self.decompose_factor, self.decompose_both)

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        layers, config = peft_tuner(self, model, LoKrLinear, "LOKR", conv1d=False, r=self.r, alpha=self.alpha,
                                    decompose_factor=self.decompose_factor, decompose_both=self.decompose_both,
                                    rank_dropout_scale=False, **LYCORIS_DEFAULTS)
        state = {}
        for name, layer in layers.items():
            for pname, p in layer.peft_named_parameters():   # w1 or (w1_a, w1_b); w2 or (w2_a, w2_b)
                state[peft_key(name, f"lokr_{pname}")] = p
        return config, state
