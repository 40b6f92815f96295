r"""pFedPara: a personalised Hadamard update, half shared and half kept at home (Hyeon-Woo et al. 2022, "FedPara:
Low-Rank Hadamard Product for Communication-Efficient Federated Learning", ICLR, §3.3 "pFedPara").

FedPara (hadamard.py, LoHa) writes a weight as (X1 Y1ᵀ) ⊙ (X2 Y2ᵀ). pFedPara splits the two inner matrices by WHO
owns them: W1 = X1 Y1ᵀ is GLOBAL (sent to the server, averaged over clients), W2 = X2 Y2ᵀ is LOCAL (never leaves
the client), and the weight is

    W = W1 ⊙ (W2 + 1) = W1 + W1 ⊙ W2        (1 = the all-ones matrix)

W1 alone is what every client shares; (W2 + 1) is each client's entry-wise switch on it. Here, as every update in
this course, it is an update of a frozen pretrained weight:

    h = W0 x + (alpha / r) · ((X1 Y1ᵀ) ⊙ (X2 Y2ᵀ + 1)) x

              global: X1 (d_out × r), Y1ᵀ (r × d_in)  -> the server averages them (FedAvg)
              local:  X2 (d_out × r), Y2ᵀ (r × d_in)  -> stay on the client (names in ``LOCAL``)

Initialisation: Y1 = 0 (so ΔW = 0: the model starts as the base model), X1, X2, Y2 kaiming-uniform as peft's LoHa.
At the first step W2 + 1 ≈ 1 and only Y1 moves: the shared part starts like a rank-r LoRA; the local part learns
once W1 ≠ 0. With W2 frozen at 0 (``shared_only``) the update IS a rank-r LoRA on W1: the chapter's baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import QUERY_VALUE, check_int, check_positive, check_rank, require_linear
from ..core.config import PeftConfig
from ..core.layers import LinearDeltaLayer
from .hadamard import kaiming

LOCAL = ("X2", "Y2")  # parameter names that never leave a client


class PFedParaLinear(LinearDeltaLayer):
    """y = W0 x + (alpha / r) · ((X1 Y1ᵀ) ⊙ (X2 Y2ᵀ + 1)) x around an nn.Linear."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, shared_only: bool):
        super().__init__(base_layer)
        d_in, d_out = self.in_features, self.out_features
        self.r, self.alpha, self.scaling, self.shared_only = r, alpha, alpha / r, shared_only
        self.X1 = self.new_parameter(d_out, r, init=kaiming)   # (d_out, r)  global
        self.Y1 = self.new_parameter(r, d_in)                  # (r, d_in)   global, 0: ΔW = 0 at init
        self.X2 = self.new_parameter(d_out, r, init=kaiming)   # (d_out, r)  local
        self.Y2 = self.new_parameter(r, d_in, init=kaiming)    # (r, d_in)   local
        if shared_only:                                        # W2 = 0 for good: a plain rank-r update W1
            x2 = self.X2.detach()                              # buffers, not parameters: inject unfreezes every
            del self.X2, self.Y2                               # parameter of a layer, a buffer it cannot train
            self.register_buffer("X2", x2)
            self.register_buffer("Y2", torch.zeros(r, d_in, device=x2.device, dtype=x2.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:       # x (B, T, d_in)
        y = self.base_layer(x)                                  # (B, T, d_out)
        return y if self.merged else y + F.linear(x, self.delta_weight())

    def delta_weight(self) -> torch.Tensor:
        W1 = self.X1 @ self.Y1                                  # (d_out, d_in) global
        W2 = self.X2 @ self.Y2                                  # (d_out, d_in) local
        return W1 * (W2 + 1) * self.scaling                     # (d_out, d_in)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}" + (", shared only" if self.shared_only else "")


@dataclass
class PFedParaConfig(PeftConfig):
    r: int = 8                 # rank of each inner matrix, W1 (global) and W2 (local)
    alpha: float = 8.0         # ΔW scaled by alpha / r, as LoHa
    shared_only: bool = False  # True: W2 fixed at 0, ΔW = W1 (the shared-only baseline, a rank-r LoRA)

    method: ClassVar[str] = "pfedpara"
    ROLES: ClassVar[tuple[str, ...]] = QUERY_VALUE

    def validate(self) -> None:
        check_int(self.r, "pFedPara rank r", "r=8")
        check_positive(self.alpha, "pFedPara alpha", "alpha=8")

    def wrap(self, module: nn.Module, name: str) -> PFedParaLinear:
        require_linear(module, name, "pFedPara")
        check_rank(self.r, module, name)
        return PFedParaLinear(module, self.r, self.alpha, self.shared_only)

    def to_peft(self, model: nn.Module):
        raise TypeError("Hugging Face peft has no pFedPara; save it with minipeft.save_adapter instead.")
