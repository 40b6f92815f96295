r"""DoRA: Weight-Decomposed Low-Rank Adaptation (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation", §3-4).

Split every pretrained weight into a magnitude and a direction, W0 = m · V / ‖V‖_c (m: the length of each row,
V / ‖V‖_c: rows of length 1), and adapt the two separately: the magnitude m directly (one number per output), the
direction with LoRA:

                 m  ⊙        W0 + s · B A                  m = ‖W0‖_c at init (so W' = W0: training starts at W0)
        W' =  ─────────── · ─────────────────     (eq. 5)   s = alpha / r (or alpha / √r: rsLoRA), B = 0 at init
               1 (per row)   ‖W0 + s · B A‖_c               ‖·‖_c: the length of each row of the (out, in) matrix
                                                            (the paper's "column-wise": its W is (in, out))
         ┌─────────┐   ┌──────────────────────────┐
         │ m (out) │ ⊙ │ direction: (W0 + s·B A)  │ / ‖W0 + s·B A‖_c  (out, 1)
         └─────────┘   │  W0 frozen, B A = LoRA   │
          trainable    └──────────────────────────┘

The paper's §4.1 finds that full fine-tuning moves magnitude and direction in opposite ways (a negative correlation
between their changes) while LoRA moves them together; DoRA, with m free, behaves like full fine-tuning with LoRA's
parameter count plus one vector of size out per matrix. §4.3: the norm ‖W0 + s·B A‖_c is treated as a constant in
the backward pass (detached), which saves memory and changes accuracy little; peft does the same, and so does this.

Merged, W' is an ordinary weight (no added latency); unmerge divides the row factor m / ‖·‖_c back out, so the norm
at merge time is kept (out numbers). With dropout on, peft applies it to the input of B A and of the W0 x inside
the correction (its forward: W0 x + b + (m/‖·‖ − 1) ⊙ W0 x̃ + (m/‖·‖) ⊙ s·B A x̃, x̃ = dropout(x)); so does this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import peft_key, peft_tuner
from .lora import LoRAConfig, LoRALinear


class DoRALinear(LoRALinear):
    """y = m ⊙ (W0 + s·B A) x / ‖W0 + s·B A‖_c + b, around an nn.Linear or GPT-2's Conv1D."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False):
        super().__init__(base_layer, r, alpha, dropout, use_rslora)
        with torch.no_grad():
            self.magnitude = nn.Parameter(self.row_norm(torch.zeros_like(self.w0())))  # (out,) = ‖W0‖_c

    def w0(self) -> torch.Tensor:
        """The base weight as (out, in), whatever the layer stores (Conv1D: (in, out))."""
        w = self.base_layer.weight
        return w.T if self.transposed else w

    def lora_weight(self) -> torch.Tensor:
        return super().delta_weight()                                 # s · B A: (out, in)

    def row_norm(self, lora_weight: torch.Tensor) -> torch.Tensor:
        return torch.linalg.norm(self.w0() + lora_weight, dim=1)     # (out,)  ‖W0 + s·B A‖_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # x (B, T, in)
        y = self.base_layer(x)                                        # (B, T, out)   W0 x + b
        if self.merged:
            return y
        lora = self.lora_weight()                                     # (out, in)
        scale = self.magnitude / self.row_norm(lora.detach()).detach()  # (out,)  m / ‖·‖_c, the norm a constant
        dropped = self.lora_dropout(x)
        if dropped is x:                                              # no dropout: W0 x is y without the bias
            w0x = y - self.base_layer.bias if self.base_layer.bias is not None else y
        else:
            w0x = F.linear(dropped, self.w0())                        # (B, T, out)   as peft does
        return y + (scale - 1) * w0x + scale * self.lora_B(self.lora_A(dropped)) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """W' − W0 = (m / ‖W0 + s·B A‖_c − 1) ⊙ W0 + (m / ‖·‖_c) ⊙ s·B A, rows scaled (out, in). Valid unmerged."""
        lora = self.lora_weight()
        scale = (self.magnitude / self.row_norm(lora)).unsqueeze(1)  # (out, 1)
        return (scale - 1) * self.w0() + scale * lora

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:  # unmerge needs the row factor as it was: the merged weight has another norm
            self.register_buffer("_merged_scale", self.magnitude / self.row_norm(self.lora_weight()),
                                 persistent=False)
        super().merge()

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        if not self._restore_unmerged():                              # W0 = W' / (m / ‖·‖_c) − s·B A
            w0 = self.w0().float() / self._merged_scale.float().unsqueeze(1) - self.lora_weight().float()
            self.base_layer.weight.data.copy_(w0.T if self.transposed else w0)
        del self._merged_scale
        self.merged = False

    def extra_repr(self) -> str:
        return super().extra_repr() + ", magnitude (out,)"


@dataclass
class DoRAConfig(LoRAConfig):
    # r, alpha, dropout, use_rslora: LoRA's, with LoRA's defaults (the paper uses LoRA's settings, often half its r)
    method: ClassVar[str] = "dora"
    layer: ClassVar[type] = DoRALinear   # LoRA's wrap (its checks) builds this layer: LoRA's A, B + m

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        """peft's LoRA with use_dora=True; its magnitude vector is saved as `lora_magnitude_vector`."""
        layers, config = peft_tuner(self, model, DoRALinear, "LORA", r=self.r, lora_alpha=self.alpha,
                                    lora_dropout=self.dropout, use_rslora=self.use_rslora, use_dora=True,
                                    bias="none")
        state = {}
        for name, layer in layers.items():
            state[peft_key(name, "lora_A.weight")] = layer.lora_A.weight           # (r, in)
            state[peft_key(name, "lora_B.weight")] = layer.lora_B.weight           # (out, r)
            state[peft_key(name, "lora_magnitude_vector")] = layer.magnitude       # (out,)
        return config, state
