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

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .inject import PeftConfig, PeftLayer, default_targets, peft_layers
from .kronecker import factorization, kron_matvec


class LoKrLinear(PeftLayer):
    """y = W0 x + (alpha / r) · (w1 ⊗ w2) x, around an nn.Linear or GPT-2's Conv1D."""

    mergeable = True

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, decompose_factor: int, decompose_both: bool):
        super().__init__(base_layer)
        d_in, d_out = self.in_features, self.out_features
        in_m, in_n = factorization(d_in, decompose_factor)
        out_l, out_k = factorization(d_out, decompose_factor)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        w = base_layer.weight
        new = lambda *shape: nn.Parameter(torch.empty(*shape, device=w.device, dtype=w.dtype))  # noqa: E731
        kaiming = lambda p: nn.init.kaiming_uniform_(p, a=math.sqrt(5))                       # noqa: E731

        # w1 (out_l, in_m): zero, or low-rank w1_a @ w1_b with w1_a zero
        if decompose_both and r < max(out_l, in_m) / 2:
            self.register_parameter("w1", None)
            self.w1_a, self.w1_b = new(out_l, r), new(r, in_m)              # (out_l, r), (r, in_m)
            nn.init.zeros_(self.w1_a)
            kaiming(self.w1_b)
        else:
            self.w1 = new(out_l, in_m)                                      # (out_l, in_m)
            nn.init.zeros_(self.w1)
            self.register_parameter("w1_a", None)
            self.register_parameter("w1_b", None)
        # w2 (out_k, in_n): full, or low-rank w2_a @ w2_b when r is small next to its size
        if r < max(out_k, in_n) / 2:
            self.register_parameter("w2", None)
            self.w2_a, self.w2_b = new(out_k, r), new(r, in_n)              # (out_k, r), (r, in_n)
            kaiming(self.w2_a)
            kaiming(self.w2_b)
        else:
            self.w2 = new(out_k, in_n)                                      # (out_k, in_n)
            kaiming(self.w2)
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
    DEFAULT_TARGETS: ClassVar[dict[str, list[str]]] = {  # peft's LoKr defaults (= its LoRA defaults)
        "bert": ["query", "value"],
        "llama": ["q_proj", "v_proj"],
        "gpt2": ["c_attn"],
    }

    def validate(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoKr rank r must be a positive integer (e.g. r=8), got {self.r!r}.")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"LoKr alpha must be a positive number (e.g. alpha=8), got {self.alpha!r}.")
        f = self.decompose_factor
        if isinstance(f, bool) or not isinstance(f, int) or not (f == -1 or f >= 1):
            raise ValueError(f"LoKr decompose_factor must be -1 (split near √d) or a positive int (one factor's "
                             f"size, e.g. 4), got {f!r}.")
        if not isinstance(self.decompose_both, bool):
            raise TypeError(f"LoKr decompose_both must be True or False, got {self.decompose_both!r}.")

    def wrap(self, module: nn.Module, name: str) -> LoKrLinear:
        if not (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"):
            raise TypeError(f"LoKr wraps nn.Linear (or GPT-2's Conv1D) layers, but {name!r} is a "
                            f"{type(module).__name__}. Target the linear layers themselves, e.g. "
                            "targets=['query', 'value'].")
        return LoKrLinear(module, self.r, self.alpha, self.decompose_factor, self.decompose_both)

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        layers = {n: m for n, m in peft_layers(model).items() if isinstance(m, LoKrLinear)}
        conv1d = [n for n, m in layers.items() if m.transposed]
        if conv1d:
            raise TypeError(f"peft's LoKr supports nn.Linear and convolutions, not GPT-2's Conv1D ({conv1d[:2]}), so "
                            "this model cannot be exported. Save it with minipeft.save_adapter instead.")
        config = {
            "peft_type": "LOKR",
            "r": self.r,
            "alpha": self.alpha,
            "decompose_factor": self.decompose_factor,
            "decompose_both": self.decompose_both,
            "rank_dropout": 0.0,
            "module_dropout": 0.0,
            "rank_dropout_scale": False,
            "use_effective_conv2d": False,
            "init_weights": True,
            "target_modules": self.targets if self.targets is not None else default_targets(self, model),
            "rank_pattern": {},
            "alpha_pattern": {},
            "task_type": None,
        }
        state = {}
        for name, layer in layers.items():
            for pname, p in layer.peft_named_parameters():   # w1 or (w1_a, w1_b); w2 or (w2_a, w2_b)
                state[f"base_model.model.{name}.lokr_{pname}"] = p
        return config, state
