r"""IA3: Infused Adapter by Inhibiting and Amplifying Inner Activations (Liu et al. 2022, "Few-Shot
Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning", §3.3).

Learn one vector per adapted layer and multiply it element-wise into an activation: no matrices at all.

        attention                                        feed-forward
    k = l_k ⊙ (W_k x)        l_k ∈ R^{d_k}          h = W_2 (l_ff ⊙ γ(W_1 x))      l_ff ∈ R^{d_ff}
    v = l_v ⊙ (W_v x)        l_v ∈ R^{d_v}
        └─ scales the OUTPUT of the key / value           └─ scales the INPUT of the down-projection W_2
           projections                                       (= the inner activation, after γ)

               output scaling                                      input scaling
        x ──► [ W ] ──► W x ──► ⊙ l ──► y                x ──► ⊙ l ──► [ W ] ──► y
                                                  same as a rescaled weight:
        y = diag(l) W x = (W with row i × l_i) x        y = W diag(l) x = (W with column j × l_j) x

All vectors start at ones, so the model starts as the base model. Because the update is a rescaling of W's rows
or columns, it merges exactly (multiply W); unmerging divides, as peft does (exact up to rounding, ~1e-7).

Which layers scale their input (``feedforward``) follows Hugging Face peft: ``feedforward`` lists the targets
that are feed-forward down-projections; by default the ones peft uses for each architecture. One peft quirk we
keep so that defaults agree: in BERT, "output.dense" also matches the attention output projection
(``attention.output.dense``), whose input is then scaled too. For the paper's exact recipe on BERT pass
``targets=r".*\.(key|value)|.*layer\.\d+\.output\.dense", feedforward=r".*layer\.\d+\.output\.dense"``.
On GPT-2, q, k and v come from one fused ``c_attn``, so l scales q as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..core.checks import peft_key, peft_tuner, require_linear
from ..core.config import PeftConfig
from ..core.layers import LinearDeltaLayer
from ..core.arch import recognise
from ..core.targets import matches, model_type


class IA3Linear(LinearDeltaLayer):
    """y = l ⊙ (W x + b)  (output scaling)   or   y = W (l ⊙ x) + b  (input scaling, ``feedforward=True``)."""

    def __init__(self, base_layer: nn.Module, feedforward: bool):
        super().__init__(base_layer)
        self.feedforward = feedforward
        n = self.in_features if feedforward else self.out_features
        w = base_layer.weight
        self.ia3_l = nn.Parameter(torch.ones(n, device=w.device, dtype=w.dtype))  # (in,) or (out,): ones = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # x (B, T, in)
        if self.merged:                                             # l already lives inside W (and b)
            return self.base_layer(x)
        if self.feedforward:
            return self.base_layer(x * self.ia3_l)                  # (B, T, out)   W (l ⊙ x) + b
        return self.base_layer(x) * self.ia3_l                      # (B, T, out)   l ⊙ (W x + b)

    def _scale(self) -> torch.Tensor:
        """l shaped to multiply the stored weight: rows (output) or columns (input) of an (out, in) weight,
        and the other way round for Conv1D, whose weight is stored (in, out)."""
        along_rows = self.feedforward == self.transposed  # l runs along dim 0 of the stored weight
        return self.ia3_l[:, None] if along_rows else self.ia3_l[None, :]

    def delta_weight(self) -> torch.Tensor:
        """The same update written additively, ΔW = (l - 1) ⊙ W0, shape (out, in). For inspection only:
        merge and unmerge below multiply and divide, which is exact where adding and subtracting is not."""
        w = self.base_layer.weight / self._scale() if self.merged else self.base_layer.weight
        delta = w * (self._scale() - 1)
        return delta.T if self.transposed else delta

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self.refuse_quantized_merge()
        self._keep_unmerged()                                 # bf16 / fp16: the exact W0 and bias, for unmerge
        self.base_layer.weight.mul_(self._scale())
        if not self.feedforward and self.base_layer.bias is not None:
            self.base_layer.bias.mul_(self.ia3_l)  # output scaling scales the bias too: l ⊙ (W x + b)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        if self._restore_unmerged():
            self.merged = False
            return
        if (self.ia3_l == 0).any():
            raise ValueError("Cannot unmerge IA3: some entries of l are 0, so the merged weight lost those rows/"
                             "columns of W0. Reload the base model instead.")
        self.base_layer.weight.div_(self._scale())
        if not self.feedforward and self.base_layer.bias is not None:
            self.base_layer.bias.div_(self.ia3_l)
        self.merged = False

    def extra_repr(self) -> str:
        return ("input scaling (feed-forward)" if self.feedforward else "output scaling") + \
            (", merged" if self.merged else "")


@dataclass
class IA3Config(PeftConfig):
    # targets: None -> peft's choice: keys, values and the feed-forward down-projection (§3.3), found in any model
    # (GPT-2 / GPT-NeoX / Phi-3: the fused qkv projection instead of k and v)
    feedforward: str | list[str] | None = None  # the targets whose INPUT is scaled; None -> the FFN down-projections

    method: ClassVar[str] = "ia3"
    ROLES: ClassVar[tuple[str, ...]] = ("k", "v", "ffn_out")
    # peft's own default on BERT, kept so that defaults agree (see the module docstring): "output.dense" also
    # matches the attention's output projection
    DEFAULT_TARGETS: ClassVar[dict[str, list[str]]] = {"bert": ["key", "value", "output.dense"]}
    DEFAULT_FEEDFORWARD: ClassVar[dict[str, list[str]]] = {"bert": ["output.dense"]}

    def validate(self) -> None:
        ff = self.feedforward
        if ff is not None and not isinstance(ff, (str, list, tuple)):
            raise TypeError(f"IA3 feedforward must be a list of module names or a regex string, not "
                            f"{type(ff).__name__}.")
        if isinstance(ff, (list, tuple)) and isinstance(self.targets, (list, tuple)):
            missing = [f for f in ff if f not in self.targets]
            if missing:  # peft's rule: feed-forward modules are a subset of the targets
                raise ValueError(f"IA3 feedforward {missing} must also appear in targets {list(self.targets)}: "
                                 "feedforward only says which of the targets scale their input.")

    def prepare(self, model: nn.Module) -> None:
        self._feedforward = self.feedforward
        if self._feedforward is None:
            kind = model_type(model)
            arch = recognise(model)
            if kind in self.DEFAULT_FEEDFORWARD:
                self._feedforward = self.DEFAULT_FEEDFORWARD[kind]
            elif arch.has("ffn_out"):
                self._feedforward = arch.names["ffn_out"]           # full names: the down-projections
            else:
                raise ValueError(f"IA3 found no feed-forward down-projection in this model (model_type={kind!r}, "
                                 f"recognised as: {arch}): pass feedforward=[...] (the targets that are feed-forward "
                                 "down-projections; [] if none).")

    def wrap(self, module: nn.Module, name: str) -> IA3Linear:
        require_linear(module, name, "IA3", verb="scales")
        return IA3Linear(module, feedforward=matches(name, self._feedforward))

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        # full module names: peft matches feedforward_modules by a bare suffix ("proj" would match "down_proj"),
        # ours at a "." boundary; exact names mean the same thing in both
        layers, config = peft_tuner(self, model, IA3Linear, "IA3")
        config["target_modules"] = sorted(layers)
        config["feedforward_modules"] = sorted(n for n, m in layers.items() if m.feedforward)
        state = {}
        for name, layer in layers.items():  # peft stores l as a row (1, in) or a column (out, 1)
            l = layer.ia3_l
            state[peft_key(name, "ia3_l")] = l[None, :] if layer.feedforward else l[:, None]
        return config, state
