"""The layer classes every method builds on. A PEFT layer WRAPS its base layer (``self.base_layer``, frozen) instead
of subclassing it, as in Hugging Face peft; three kinds cover every method of the course:

    PeftLayer          any wrapper: base_layer, the PEFT parameters beside it, a clear refusal to merge
                       (prefix attention, sequential bottleneck adapters)
    LinearDeltaLayer   wraps nn.Linear (or GPT-2's Conv1D) and adds a weight update ΔW (out, in);
                       ``delta_weight()`` is the one function that drives merge and unmerge
                       (LoRA, AdaLoRA, KronA, LoHa, LoKr; IA3 rescales W and merges by multiplying)
    ParallelFFNLayer   sits beside a whole feed-forward block: FFN(x) + branch(x), x the block's input
                       (parallel adapters, KronA^B)

``PeftModule`` marks a module all of whose parameters are PEFT parameters (soft prompts, prefix tables).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class PeftModule(nn.Module):
    """Marker: every parameter of this module is a PEFT parameter (prompt encoders, prefix tables...)."""

    mergeable: ClassVar[bool] = False  # a PeftLayer with a weight update says otherwise (LinearDeltaLayer)


class PeftLayer(PeftModule):
    """A wrapper around ``base_layer``. Its own parameters (outside base_layer) are what inject trains."""

    # why merge() refuses, for layers with no weight-space update (a subclass says it in its own words)
    not_mergeable: ClassVar[str] = "it has no weight-space update ΔW to fold into its base layer"

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.merged = False

    def peft_named_parameters(self):
        """This layer's own parameters, i.e. everything outside base_layer."""
        for name, p in self.named_parameters():
            if not name.startswith("base_layer."):
                yield name, p

    def merge(self) -> None:
        raise TypeError(f"{type(self).__name__} cannot be merged: {self.not_mergeable}. "
                        "Keep the layers at inference.")

    def unmerge(self) -> None:  # never merged
        pass

    def refuse_quantized_merge(self) -> None:
        """A base layer stored in int8 (minipeft.quantize) cannot take W0 + ΔW: rounding it to int8 again would lose
        most of ΔW, whose entries are far smaller than one rounding step."""
        if getattr(self.base_layer, "quantized", False):
            raise TypeError(f"{type(self).__name__} cannot merge into its int8 base layer: W0 + ΔW would be rounded "
                            "to int8 again, and ΔW is far smaller than one rounding step. Call "
                            "minipeft.dequantize(model) first (a float W0), then merge.")

    # -- low precision: W0 + ΔW − ΔW is not W0 once every step is rounded to bf16's 8 significant bits (ten merge /
    # unmerge cycles moved a bf16 W0 by 0.03, against a mean |W0| of 0.016). While merged, a bf16 / fp16 layer keeps
    # its exact W0 (and bias) aside, a copy of that layer's weights, and unmerge puts them back bit for bit.
    def _keep_unmerged(self) -> None:
        for name in ("weight", "bias"):
            tensor = getattr(self.base_layer, name, None)
            if tensor is not None and tensor.element_size() < 4:
                self.register_buffer(f"_unmerged_{name}", tensor.detach().clone(), persistent=False)

    def _restore_unmerged(self) -> bool:
        """Put the kept W0 back (True), or say there is none (False: float32 / float64, undo the update exactly)."""
        kept = [name for name in ("weight", "bias") if hasattr(self, f"_unmerged_{name}")]
        for name in kept:
            getattr(self.base_layer, name).data.copy_(getattr(self, f"_unmerged_{name}"))
            delattr(self, f"_unmerged_{name}")
        return bool(kept)

    def extra_repr(self) -> str:
        return "merged" if self.merged else ""


class LinearDeltaLayer(PeftLayer):
    """y = W0 x + ΔW x around an nn.Linear or GPT-2's Conv1D (whose weight is stored transposed, (in, out)).

    A method implements ``forward`` (usually without building ΔW) and ``delta_weight()`` (out, in); merge adds
    ΔW to W0 and unmerge subtracts it.
    """

    mergeable = True

    # -- the geometry of the base layer
    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def transposed(self) -> bool:
        return type(self.base_layer).__name__ == "Conv1D"

    @property
    def in_features(self) -> int:
        w = self.base_layer.weight
        return w.shape[0] if self.transposed else w.shape[1]

    @property
    def out_features(self) -> int:
        w = self.base_layer.weight
        return w.shape[1] if self.transposed else w.shape[0]

    def new_parameter(self, *shape: int, init=None) -> nn.Parameter:
        """A parameter on the base weight's device and dtype: zeros, or filled by ``init`` (e.g. kaiming)."""
        w = self.base_layer.weight
        p = nn.Parameter(torch.zeros(*shape, device=w.device, dtype=w.dtype))
        if init is not None:
            init(p)
        return p

    # -- merge / unmerge, driven by delta_weight()
    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement delta_weight() -> (out, in)")

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self.refuse_quantized_merge()
        delta = self.delta_weight()
        self._keep_unmerged()
        self.base_layer.weight.data += (delta.T if self.transposed else delta).to(self.base_layer.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        if not self._restore_unmerged():
            delta = self.delta_weight()
            self.base_layer.weight.data -= (delta.T if self.transposed else delta).to(self.base_layer.weight.dtype)
        self.merged = False


class ParallelFFNLayer(PeftLayer):
    """FFN(x) + branch(x), with x the INPUT of the feed-forward block (He et al. 2022's parallel placement).

    Llama / GPT-2: the wrapped ``mlp`` maps x to FFN(x). BERT's FFN is split in two modules; its second half
    ``output`` is called as output(h_ffn, x) = LayerNorm(dropout(dense(h_ffn)) + x), with x the FFN input as the
    residual: passing x + branch(x) instead of x adds branch(x) to the FFN output, before the residual and
    LayerNorm, without copying BERT's code.
    """

    not_mergeable = "it sits beside a whole feed-forward block, which is nonlinear: there is no ΔW for one weight"

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *residual: torch.Tensor) -> torch.Tensor:
        if residual:                                  # BERT: (h_ffn (B, T, d_ff), x (B, T, d))
            (x_in,) = residual
            return self.base_layer(x, x_in + self.branch(x_in))
        return self.base_layer(x) + self.branch(x)    # Llama / GPT-2 mlp: (B, T, d)
