"""AdapterFusion: Pfeiffer, Kamath, Rücklé, Cho & Gurevych 2021, *AdapterFusion: Non-Destructive Task Composition
for Transfer Learning*, §3.

Two stages. **Knowledge extraction** (§3.1): one bottleneck adapter per source task n = 1..N, each trained on its own
(methods/adapters.py, Pfeiffer placement: after the FFN's down-projection). **Knowledge composition** (§3.2): the base
model AND those N adapters frozen, a new task learns, in every layer l, an attention over the adapters' outputs
(plus its own classification head):

        h (B, T, d)  the FFN's output (the sublayer the adapters read)
          ├──▶ adapter 1 ──▶ a_1 ─┐          s_n = softmax_n( (h W_Q) · (a_n W_K) )      one weight per token
          ├──▶   ...            ──┼──▶       o   = h + Σ_n s_n · a_n W_V                  (B, T, d)
          └──▶ adapter N ──▶ a_N ─┘

Query from the layer's own output h, keys and values from each adapter's update a_n = up(f(down(h))) (the paper's
Eq. for Ψ; in the authors' implementation, AdapterHub's ``BertFusion``, the keys and values are the adapters' up-
projection outputs and the residual h is added after the attention, as here). W_V starts at the identity, so at step 0
o = h + Σ_n s_n a_n: a weighted mean of the adapters' updates; W_Q and W_K start small and random (BERT's init,
std 0.02), so the first weights are close to uniform. With ONE adapter and W_V = I, s_1 = 1 and o is exactly that
adapter's output h + a_1 (tests/test_fusion.py checks it).

    W_Q, W_K: d² + d each, W_V: d² per layer: 3d² + 2d = 443,136 numbers per layer for MiniLM (d = 384): far more
    than one adapter (2md + d + m = 49,600 at m = 64). The paper trains them because they are shared by no task.

``regularization`` adds λ Σ_l ‖W_V,l − I‖² to the loss (the authors' implementation does, with λ = 0.01): it keeps the
values close to the adapters' own outputs, so the attention has to choose between adapters rather than W_V learning
the task by itself. Nothing here merges: the adapters are nonlinear and the weights depend on the input.

    config = FusionConfig.from_models({"amazon": model_a, "nyt": model_n})    # their Pfeiffer adapters, copied
    fused = chapter.classifier(encoder, config, seed=0)                       # the ONE inject: fusion + new head
    fusion_weights(fused)                                                     # {layer: (N,) mean weight per source}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..core.checks import check_positive
from ..core.config import PeftConfig
from ..core.inject import peft_layers
from ..core.layers import PeftLayer
from .adapters import Adapter, SequentialAdapter, adapter_layer_index


class FusionLayer(PeftLayer):
    """Wraps the projection the source adapters sat on; holds the frozen adapters and the trainable W_Q, W_K, W_V."""

    not_mergeable = "its output is an input-dependent mix of nonlinear adapters: there is no ΔW"

    def __init__(self, base_layer: nn.Module, adapters: list[Adapter], init_std: float = 0.02):
        super().__init__(base_layer)
        d = adapters[0].up.out_features
        self.adapters = nn.ModuleList(adapters).requires_grad_(False)   # frozen: knowledge extraction is over
        self.query = nn.Linear(d, d)                                       # W_Q (d, d) + bias
        self.key = nn.Linear(d, d)                                         # W_K (d, d) + bias
        self.value = nn.Linear(d, d, bias=False)                           # W_V (d, d), starts at I
        for lin in (self.query, self.key):
            nn.init.normal_(lin.weight, std=init_std)
            nn.init.zeros_(lin.bias)
        with torch.no_grad():
            self.value.weight.copy_(torch.eye(d))
        w = next(base_layer.parameters())
        self.to(device=w.device, dtype=w.dtype)
        self.last_weights: torch.Tensor | None = None   # (B, T, N) of the latest forward, kept when record = True
        self.record = False

    def peft_named_parameters(self):
        """Only the fusion trains (and is saved): the source adapters stay as they were trained."""
        for name, p in self.named_parameters():
            if name.split(".")[0] in ("query", "key", "value"):
                yield name, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)                                             # (B, T, d) the sublayer's output
        a = torch.stack([adapter(h) for adapter in self.adapters], dim=2)  # (B, T, N, d) each adapter's update
        q = self.query(h).unsqueeze(-1)                                    # (B, T, d, 1)
        scores = (self.key(a) @ q).squeeze(-1)                             # (B, T, N)
        weights = scores.softmax(dim=-1)                                   # (B, T, N), sums to 1 over N
        if self.record:
            self.last_weights = weights.detach()
        mixed = (weights.unsqueeze(-1) * a).sum(dim=2)                     # (B, T, d) Σ_n s_n a_n
        return h + self.value(mixed)                                       # W_V is linear: Σ s_n (a_n W_V)

    def extra_repr(self) -> str:
        return f"sources={len(self.adapters)}"


@dataclass
class FusionConfig(PeftConfig):
    sources: list[str] = field(default_factory=list)  # the source tasks, in order: the attention's N columns
    init_std: float = 0.02        # std of W_Q, W_K (BERT's init, as the authors' implementation)
    regularization: float = 0.01  # λ in λ Σ_l ‖W_V,l − I‖² (the authors' implementation: 0.01); 0 switches it off
    # source -> {module name: its trained adapter}: set by from_models, carried by dataclasses.replace, never saved
    adapters: dict = field(default_factory=dict, repr=False, compare=False)

    method: ClassVar[str] = "fusion"

    def to_dict(self) -> dict:
        """What save_adapter stores: the sources' names, not their adapters (modules are not JSON)."""
        adapters, self.adapters = self.adapters, {}       # (to_dict deep-copies every field: not the modules)
        try:
            data = super().to_dict()
        finally:
            self.adapters = adapters
        data.pop("adapters")
        return data

    @classmethod
    def from_models(cls, models: dict[str, nn.Module], **kwargs) -> "FusionConfig":
        """The config that fuses the bottleneck adapters of ``models`` ({source task: a model trained with one
        sequential adapter config}): every source must have adapters on the same modules, which become the targets."""
        if len(models) < 1:
            raise ValueError("AdapterFusion needs at least one trained source model: {task: model}.")
        found = {task: peft_layers(m, SequentialAdapter) for task, m in models.items()}
        names = {task: sorted(layers) for task, layers in found.items()}
        first = next(iter(names.values()))
        if not first or any(n != first for n in names.values()):
            raise ValueError(f"every source model needs sequential (Houlsby / Pfeiffer) adapters on the same modules; "
                             f"found {({t: len(n) for t, n in names.items()})} adapter layers per source. Train each "
                             f"with the same AdapterConfig(kind='pfeiffer', ...).")
        config = cls(targets=first, sources=list(models), **kwargs)
        config.adapters = {task: {name: copy.deepcopy(layer.adapter) for name, layer in layers.items()}
                           for task, layers in found.items()}
        return config

    def validate(self) -> None:
        check_positive(self.init_std, "init_std", "0.02")
        check_positive(self.regularization, "regularization", "0.01", allow_zero=True)
        if not self.sources or set(self.adapters) != set(self.sources):
            raise ValueError("FusionConfig holds no trained adapters: build it with FusionConfig.from_models("
                             "{task: trained model, ...}) (a saved fusion is reloaded the same way).")

    def wrap(self, module: nn.Module, name: str) -> nn.Module:
        missing = [s for s in self.sources if name not in self.adapters[s]]
        if missing:
            raise ValueError(f"{name}: the sources {missing} have no adapter there; their adapters sit on "
                             f"{sorted(self.adapters[self.sources[0]])[:2]}...")
        return FusionLayer(module, [copy.deepcopy(self.adapters[s][name]) for s in self.sources], self.init_std)

    def fit_hooks(self, model: nn.Module, steps: int) -> dict:
        if self.regularization == 0:
            return {}
        layers = list(peft_layers(model, FusionLayer).values())

        def value_penalty(_model) -> torch.Tensor:
            eye = torch.eye(layers[0].value.weight.shape[0], device=layers[0].value.weight.device)
            return self.regularization * sum(((layer.value.weight - eye) ** 2).sum() for layer in layers)
        return {"extra_loss": value_penalty}

    def to_peft(self, model: nn.Module):
        raise TypeError("Hugging Face peft has no AdapterFusion (nor bottleneck adapters): use AdapterHub's "
                        "`adapters` library, or save it with minipeft.")


# --------------------------------------------------------------------------------------------- reading the attention
class recording:
    """Inside the block every FusionLayer keeps its latest attention weights (``last_weights``, (B, T, N))."""

    def __init__(self, model: nn.Module):
        self.layers = peft_layers(model, FusionLayer)
        if not self.layers:
            raise ValueError("This model has no fusion layers: inject(model, FusionConfig.from_models(...)) first.")

    def __enter__(self) -> dict[int, FusionLayer]:
        for layer in self.layers.values():
            layer.record = True
        return {adapter_layer_index(name): layer for name, layer in self.layers.items()}

    def __exit__(self, *exc) -> None:
        for layer in self.layers.values():
            layer.record, layer.last_weights = False, None


@torch.no_grad()
def fusion_weights(model: nn.Module, batches) -> dict[int, list[float]]:
    """{layer index: [mean attention weight on each source]}, averaged over the real tokens of ``batches`` (dicts of
    input_ids / attention_mask, as a tokenizer returns them): which source each layer listens to."""
    model.eval()
    totals: dict[int, torch.Tensor] = {}
    count = 0.0
    with recording(model) as layers:
        for batch in batches:
            model(**batch)
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float64)          # (B, T, 1)
            for i, layer in layers.items():
                totals[i] = totals.get(i, 0) + (layer.last_weights.to(torch.float64) * mask).sum((0, 1))   # (N,)
            count += float(mask.sum())
    if not count:
        raise ValueError("fusion_weights needs at least one batch with a real token.")
    return {i: (totals[i] / count).tolist() for i in sorted(totals)}
