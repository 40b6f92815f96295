"""A quantised frozen base: QLoRA's idea (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", §3)
at int8, with torch's own per-channel quantisation.

QLoRA stores the frozen weights W0 in 4 bits, dequantises each one to bf16 just before its matmul, and trains LoRA
in bf16 beside it: the gradients flow THROUGH the quantised weights (to the LoRA factors and the activations) but
never INTO them. The memory of the frozen model shrinks 4x (fp16 -> 4 bit); the accuracy cost is the rounding of W0.
Here the rounding is int8, symmetric, one scale per output row (what `torch.quantize_per_channel(W, scale, 0,
axis=0, dtype=torch.qint8)` computes, and what the test checks; torch 2.13 marks its quantised tensors deprecated,
so the rounding is written out here): 4x smaller than float32, and on a CPU all that torch needs.

    mp.quantize_frozen(model)                 every nn.Linear outside the PEFT layers -> Int8Linear (call it BEFORE
    mp.inject(model, mp.LoRAConfig(r=8))      inject, as QLoRA quantises first; or after: PEFT layers' own
                                              parameters are never quantised, their base layers are)
    mp.dequantize(model)                      back to nn.Linear (the rounded W0: the rounding is not undone)

Merging LoRA into an int8 W0 would round W0 + ΔW to int8 again and lose most of ΔW (its entries are far smaller than
one quantisation step): merge refuses and says to dequantize first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .core.layers import PeftModule
from .core.targets import get_parent


class Int8Linear(nn.Module):
    """A frozen nn.Linear stored as int8 (out, in) + one float scale per output row; y = (q · s) x + b."""

    quantized = True  # PEFT layers around it refuse to merge (core/layers.py)

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()                                   # (out, in)
        scale = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)  # (out,)
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.dtype = linear.weight.dtype                                     # what the layer computes in

    @property
    def weight(self) -> torch.Tensor:
        """W0 as the matmul sees it, dequantised (out, in): a new tensor each time, never a parameter to train."""
        return (self.qweight.float() * self.scale[:, None]).to(self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                     # x (..., in) -> (..., out)
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def to_linear(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.qweight.device, dtype=self.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear.requires_grad_(False)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int8 per-row"


# output layers stay in float: a classifier head is trained, and a decoder's lm_head is tied to the input embeddings
# (quantising it would store a second, int8 copy of them). QLoRA keeps them in 16 bit too.
OUTPUT_LAYERS = ("head", "lm_head", "classifier", "score")


def _outside_peft(model: nn.Module, name: str) -> bool:
    """The module is not one of a PEFT module's own parameters (LoRA's A and B, an adapter's projections): below a
    PeftModule only its base_layer is the frozen model."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        if isinstance(model.get_submodule(".".join(parts[:i])), PeftModule) and parts[i] != "base_layer":
            return False
    return True


def quantize_frozen(model: nn.Module, keep: tuple[str, ...] = OUTPUT_LAYERS) -> nn.Module:
    """Every nn.Linear of the frozen model becomes an Int8Linear, in place: not a PEFT module's own layers, not a
    module whose name ends with one of `keep`. Before inject (as QLoRA does) or after. Returns the model."""
    keep = tuple(keep)
    targets = [(n, m) for n, m in model.named_modules()
               if type(m) is nn.Linear and _outside_peft(model, n) and not (keep and n.endswith(keep))]
    trainable = [n for n, m in targets if hasattr(model, "minipeft_configs") and m.weight.requires_grad]
    if trainable:
        raise ValueError(f"{trainable[:3]} are trained (modules_to_save?): an int8 weight cannot be. Name them in "
                         f"keep=(...), e.g. keep={keep + (trainable[0].split('.')[-1],)!r}.")
    if not targets:
        raise ValueError("No nn.Linear to quantise (already quantised, or every one is in keep).")
    for name, linear in targets:
        parent, child = get_parent(model, name)
        setattr(parent, child, Int8Linear(linear))
    return model


def dequantize(model: nn.Module) -> nn.Module:
    """Every Int8Linear back to a (frozen) nn.Linear holding the rounded W0, in place; then LoRA can merge."""
    for name, module in [(n, m) for n, m in model.named_modules() if isinstance(m, Int8Linear)]:
        parent, child = get_parent(model, name)
        setattr(parent, child, module.to_linear())
    return model


def model_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (a tied weight once): what the model holds in memory, int8 or float."""
    return (sum(p.numel() * p.element_size() for p in model.parameters())
            + sum(b.numel() * b.element_size() for b in model.buffers()))
