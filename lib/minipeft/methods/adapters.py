"""Bottleneck adapters: Houlsby et al. 2019 (§2.1, Fig. 2), Pfeiffer et al. 2021, He et al. 2022 (§3, parallel).

One adapter is a small two-layer network with a bottleneck m << d, added to the hidden state h (B, T, d):

        h (B, T, d) ──┬──────────────────────────────────────────▶ (+) ──▶ h + s · up(f(down(h)))
                      └──▶ down: d → m ──▶ f ──▶ up: m → d ──▶ × s ──┘

        parameters: down (md + m) + up (md + d) = 2md + d + m

WHERE it sits is what distinguishes the variants (one Transformer layer, BERT's post-LayerNorm form):

    houlsby  (2 per layer)   attention ─▶ out-proj ─▶[A]─▶ +res ─▶ LN ─▶ FFN ─▶ out-proj ─▶[A]─▶ +res ─▶ LN
    pfeiffer (1 per layer)   attention ─▶ out-proj ──────▶ +res ─▶ LN ─▶ FFN ─▶ out-proj ─▶[A]─▶ +res ─▶ LN
    parallel (He et al.)     ... ─▶ LN ─▶ x ─┬─▶ FFN ────────┬─(+)─▶ +res ─▶ LN       the adapter reads the FFN's
                                             └─▶[A] ──▶ × s ─┘                       INPUT, adds to its OUTPUT

Sequential adapters wrap the output projection (BERT ``attention.output.dense`` / ``output.dense``, Llama ``o_proj`` /
``down_proj``, GPT-2 ``c_proj``), so [A] sees the projection's output before dropout, residual and LayerNorm. The
parallel adapter wraps the whole FFN block (Llama/GPT-2 ``mlp``; BERT's FFN is split in two modules, and its second half
``output`` receives the FFN input as its residual argument, see ``ParallelAdapter``).

Initialisation (Houlsby §2.1: "near-identity"): down ~ N(0, init_std²), up = 0, biases 0, so Δh = 0 and the adapted
network IS the pre-trained one at step 0; the random down projection makes up's gradient non-zero from the first step
(the same trick as LoRA's B = 0). ``zero_up=False`` gives Houlsby's own init (both projections small-normal): near-,
not exactly, identity; its error grows with init_std (Houlsby Fig. 6), which the course shows.

Adapters are nonlinear (f), so there is no ΔW to merge: they stay in the model at inference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Iterable

import torch
from torch import nn

from ..core.checks import (FFN_BLOCK, check_choice, check_int, check_positive, linear_shape,
                           norm_parameter_names, require_ffn_block, require_linear)
from ..core.config import PeftConfig
from ..core.inject import peft_layers
from ..core.layers import ParallelFFNLayer, PeftLayer

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "swish": nn.SiLU}
KINDS = ("houlsby", "pfeiffer", "parallel")

# where each kind sits: parts of every block (core/arch.py finds them in any model; see PeftConfig.ROLES)
PLACEMENT: dict[str, tuple[str, ...]] = {
    "houlsby": ("o", "ffn_out"),   # after the attention's output projection and after the FFN's down-projection
    "pfeiffer": ("ffn_out",),      # after the FFN's down-projection only
    "parallel": FFN_BLOCK,         # beside the whole FFN block (BERT: its second half, "output")
}
LAYER_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")  # the first index in a name: "encoder.layer.3.output.dense" -> 3


# --------------------------------------------------------------------------------------------- the adapter
class Adapter(nn.Module):
    """Δh = s · up(f(down(h))), d -> m -> d. Exactly 2md + d + m parameters."""

    def __init__(self, d: int, m: int, nonlinearity: str, scaling: float, init_std: float, zero_up: bool):
        super().__init__()
        self.down = nn.Linear(d, m)              # weight (m, d), bias (m)
        self.act = ACTIVATIONS[nonlinearity]()
        self.up = nn.Linear(m, d)                # weight (d, m), bias (d)
        self.scaling = scaling
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)
        if zero_up:
            nn.init.zeros_(self.up.weight)       # Δh = 0 exactly at init
        else:
            nn.init.normal_(self.up.weight, std=init_std)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.up(self.act(self.down(h)))  # (B, T, m) inside, (B, T, d) out

    def extra_repr(self) -> str:
        return f"scaling={self.scaling}"


class _AdapterLayer(PeftLayer):
    """What both placements share: the adapter, an on/off switch, and a clear refusal to merge."""

    not_mergeable = "up(f(down(h))) is nonlinear, so there is no weight update ΔW to fold into the base layer"

    def __init__(self, base_layer: nn.Module, adapter: Adapter):
        super().__init__(base_layer)
        self.adapter = adapter
        self.enabled = True  # False -> the layer behaves exactly like its base layer (see set_adapter_layers)

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight: some models read it from the module they call (T5's FFN checks wo.weight's
        dtype before calling wo)."""
        return self.base_layer.weight

    def extra_repr(self) -> str:
        return "" if self.enabled else "disabled"


class SequentialAdapter(_AdapterLayer):
    """Houlsby / Pfeiffer: the adapter transforms the output of a projection, inside the residual branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)                    # (B, T, d) the projection's output
        return h + self.adapter(h) if self.enabled else h


class ParallelAdapter(_AdapterLayer, ParallelFFNLayer):
    """He et al. 2022: FFN(x) + s · up(f(down(x))) with x the FFN's input (the placement: ParallelFFNLayer)."""

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(x)                    # (B, T, d)

    def forward(self, x: torch.Tensor, *residual: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.base_layer(x, *residual)
        return super().forward(x, *residual)


# --------------------------------------------------------------------------------------------- the config
@dataclass
class AdapterConfig(PeftConfig):
    kind: str = "houlsby"          # houlsby (2/layer, Houlsby §2.1) | pfeiffer (FFN only) | parallel (He et al. §3)
    bottleneck: int = 64           # m; Houlsby sweeps m in {8, 64, 256}: 64 is a good middle on BERT-size models
    nonlinearity: str = "relu"     # f; Houlsby does not fix it, relu is the common choice in adapter libraries
    scaling: float = 1.0           # s; 1 for sequential adapters (Houlsby); He et al. use s = 4 for parallel ones
    init_std: float = 1e-3         # std of down (and of up if zero_up=False): small -> near-identity (Houlsby §3.6)
    zero_up: bool = True           # True: up = 0, exact identity at init; False: Houlsby's own small-normal up
    train_layernorm: bool = False  # Houlsby also trains every LayerNorm (2 x 2d per layer); off = adapters only
    layers: list[int] | None = None  # only these layer indices get adapters (None: all); or pass targets yourself

    method: ClassVar[str] = "adapter"

    @property
    def ROLES(self) -> tuple[str, ...]:  # inject() reads this: the placement depends on kind
        return PLACEMENT[self.kind]

    def restrict_defaults(self, names: list[str]) -> list[str]:
        if self.layers is None:
            return names
        missing = sorted(set(self.layers) - {adapter_layer_index(n) for n in names})
        if missing:
            raise ValueError(f"AdapterConfig layers {missing} matched no module: this model's layers are "
                             f"{sorted({adapter_layer_index(n) for n in names})}.")
        return [n for n in names if adapter_layer_index(n) in self.layers]

    def validate(self) -> None:
        check_choice(self.kind, KINDS, "adapter kind")
        check_int(self.bottleneck, "bottleneck", "64", meaning="the size m", type_error=True)
        check_choice(self.nonlinearity, sorted(ACTIVATIONS), "nonlinearity")
        check_positive(self.scaling, "scaling", "s = 1 for Houlsby, 4 for He et al.'s parallel adapter")
        check_positive(self.init_std, "init_std", "1e-3", allow_zero=True)
        if self.layers is not None:
            if self.targets is not None:
                raise ValueError("Give either layers=[...] or targets=..., not both: layers picks layers of the "
                                 "default placement, targets replaces the placement.")
            if not self.layers or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                          for i in self.layers):
                raise ValueError(f"layers must be a non-empty list of layer indices >= 0, got {self.layers!r}.")

    def wrap(self, module: nn.Module, name: str) -> nn.Module:
        if self.kind == "parallel":
            d = require_ffn_block(module, name, "A parallel adapter", "Target e.g. 'mlp' (Llama) or 'output' (BERT).")
            layer_cls = ParallelAdapter
        else:
            require_linear(module, name, f"A {self.kind} adapter", what="an output projection (nn.Linear or Conv1D)",
                           example="['output.dense'] (BERT) or ['o_proj'] (Llama)")
            d, layer_cls = linear_shape(module)[0], SequentialAdapter
        if self.bottleneck >= d:
            raise ValueError(f"bottleneck m={self.bottleneck} is not smaller than the hidden size d={d} of {name}: "
                             f"an adapter must compress. Choose m < {d} (e.g. {max(1, d // 8)}).")
        adapter = Adapter(d, self.bottleneck, self.nonlinearity, float(self.scaling), self.init_std, self.zero_up)
        w = next(module.parameters())
        return layer_cls(module, adapter.to(device=w.device, dtype=w.dtype))

    def extra_trainable(self, model: nn.Module):
        """Houlsby §2.1: 'the layer normalization parameters' are trained too (RMSNorm in Llama)."""
        if not self.train_layernorm:
            return []
        return norm_parameter_names(model)

    def to_peft(self, model: nn.Module):
        raise TypeError("Hugging Face peft has no bottleneck adapters (Houlsby, Pfeiffer or parallel), so they cannot "
                        "be exported to peft. Save them with minipeft instead, or use AdapterHub's `adapters` library.")


# --------------------------------------------------------------------------------------------- after training
def adapter_layer_index(name: str) -> int:
    """Transformer layer index in a module name: 'encoder.layer.3.output.dense' -> 3."""
    match = LAYER_INDEX.search(name)
    if match is None:
        raise ValueError(f"Cannot tell which layer {name!r} belongs to (expected '...layer.<i>...').")
    return int(match.group(1))


def set_adapter_layers(model: nn.Module, active: Iterable[int] | None) -> dict[int, bool]:
    """Switch adapters on in the layers listed in ``active`` and off everywhere else (Houlsby §3.6 removes the
    adapters of some layers from a trained model). ``active=None`` switches all back on. Returns {layer: on?}."""
    layers = peft_layers(model, _AdapterLayer)
    if not layers:
        raise ValueError("This model has no bottleneck adapters: inject(model, AdapterConfig(...)) first.")
    present = sorted({adapter_layer_index(name) for name in layers})
    if active is not None:
        active = set(active)
        unknown = sorted(active - set(present))
        if unknown:
            raise ValueError(f"Layers {unknown} have no adapter; layers with adapters: {present}.")
    state = {}
    for name, layer in layers.items():
        i = adapter_layer_index(name)
        layer.enabled = active is None or i in active
        state[i] = layer.enabled
    return dict(sorted(state.items()))
