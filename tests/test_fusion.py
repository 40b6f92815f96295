"""methods/fusion.py: AdapterFusion (Pfeiffer et al. 2021, §3) on a tiny random encoder. No peft equivalent exists,
so instead of a parity test: the algebra (one source + W_V = I is that source's adapter; the weights sum to 1), what
trains (the fusion and the head, nothing else) and what must not move (the source adapters)."""

import pytest
import torch
from datasets import Dataset

import minipeft as mp
from minipeft.lab import chapter, train
from minipeft.methods.fusion import FusionConfig, FusionLayer, fusion_weights

pytestmark = pytest.mark.usefixtures("one_thread")
X = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(0))
PFEIFFER = mp.AdapterConfig(kind="pfeiffer", bottleneck=8)


def _source(seed: int) -> train.MeanPoolClassifier:
    """A classifier with a Pfeiffer adapter whose weights are random (as if trained: up = 0 would be the identity)."""
    model = chapter.classifier(mp.tiny_encoder(seed=0), PFEIFFER, seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapter." in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def _fused(sources: dict, seed: int = 0, **kwargs) -> train.MeanPoolClassifier:
    return chapter.classifier(mp.tiny_encoder(seed=0), FusionConfig.from_models(sources, **kwargs), seed=seed)


def _hidden(model):
    with torch.no_grad():
        return model.eval().encoder(input_ids=X).last_hidden_state


def test_one_source_with_identity_values_is_that_adapter():
    source = _source(1)
    fused = _fused({"a": source})
    assert (_hidden(fused) - _hidden(source)).abs().max() < 1e-5
    assert (_hidden(fused) - _hidden(chapter.classifier(mp.tiny_encoder(seed=0), "head"))).abs().max() > 1e-2


def test_the_weights_sum_to_one_per_token_and_differ_between_tokens():
    fused = _fused({"a": _source(1), "b": _source(2), "c": _source(3)}, init_std=0.5)
    layers = mp.peft_layers(fused, FusionLayer)
    assert len(layers) == 2                                     # the tiny encoder's two layers, one fusion each
    for layer in layers.values():
        layer.record = True
    _hidden(fused)
    for layer in layers.values():
        w = layer.last_weights                                  # (B, T, N)
        assert w.shape == (*X.shape, 3) and (w >= 0).all()
        assert torch.allclose(w.sum(-1), torch.ones(X.shape), atol=1e-6)
        assert w.std(dim=(0, 1)).max() > 1e-3                   # a per-token attention, not one constant mix
    mean = fusion_weights(fused, [{"input_ids": X, "attention_mask": torch.ones_like(X)}])
    assert sorted(mean) == [0, 1] and all(abs(sum(v) - 1) < 1e-6 for v in mean.values())
    assert not any(layer.record or layer.last_weights is not None for layer in layers.values())


def _toy(n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g).tolist()
    return Dataset.from_dict({"input_ids": [[1] + [3 + y * 40 + int(torch.randint(0, 30, (1,), generator=g))
                                                  for _ in range(5)] for y in labels], "label": labels})


class _Tok:
    pad_token_id = 0


def test_only_the_fusion_and_the_head_train_and_the_sources_do_not_move():
    sources = {"a": _source(1), "b": _source(2)}
    before = {k: v.clone() for k, v in sources["a"].state_dict().items()}
    fused = _fused(sources)
    trainable = {n for n, p in fused.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") or n.split(".")[-2] in ("query", "key", "value")
                             and ".adapters." not in n and "attention" not in n for n in trainable)
    d, layers = 32, 2
    assert sum(fused.get_parameter(n).numel() for n in trainable) == layers * (3 * d * d + 2 * d) + (d * 2 + 2)
    adapters = {n: p.clone() for n, p in fused.named_parameters() if ".adapters." in n}
    values = {n: p.clone() for n, p in fused.named_parameters() if n.endswith("value.weight")}
    result = train.fit(fused, _Tok(), _toy(64, 0), None, train.TrainConfig(epochs=2, lr=1e-2, batch_size=16,
                                                                            progress=False),
                       **chapter.method_hooks(fused, 8))
    assert result.trainable == sum(fused.get_parameter(n).numel() for n in trainable)
    assert all(torch.equal(p, adapters[n]) for n, p in fused.named_parameters() if ".adapters." in n)
    assert any(not torch.equal(p, values[n]) for n, p in fused.named_parameters() if n in values)   # it trained
    assert all(torch.equal(v, sources["a"].state_dict()[k]) for k, v in before.items())            # copies, not shared


def test_the_value_penalty_is_zero_at_init_and_switches_off():
    fused = _fused({"a": _source(1), "b": _source(2)})
    hooks = chapter.method_hooks(fused, 10)
    assert hooks["extra_loss"](fused).item() == 0.0
    layer = next(iter(mp.peft_layers(fused, FusionLayer).values()))
    with torch.no_grad():
        layer.value.weight[0, 0] += 2.0
    assert hooks["extra_loss"](fused).item() == pytest.approx(0.01 * 4.0)
    assert chapter.method_hooks(_fused({"a": _source(1)}, regularization=0.0), 10) == {}


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="from_models"):
        mp.inject(mp.tiny_encoder(), FusionConfig(sources=["a"]))
    with pytest.raises(ValueError, match="same modules"):
        FusionConfig.from_models({"a": _source(1), "b": chapter.classifier(mp.tiny_encoder(), "head")})
    with pytest.raises(ValueError, match="regularization"):
        _fused({"a": _source(1)}, regularization=-1.0)
    config = FusionConfig.from_models({"a": _source(1)})
    assert "adapters" not in config.to_dict() and config.to_dict()["sources"] == ["a"]
    with pytest.raises(TypeError, match="cannot be merged"):
        mp.merge(_fused({"a": _source(1)}))
