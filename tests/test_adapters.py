"""Bottleneck adapters (minipeft/adapters.py): identity at init, 2md+d+m, placement, layer toggle, bad inputs."""

import pytest
import torch

import minipeft as mp
from helpers import (TINY, assert_inject_refused, assert_round_trip, ids, learn_rotten_tomatoes, loss_fell,
                     minilm_classifier, out, randomise)
from minipeft.methods.adapters import Adapter, ParallelAdapter, SequentialAdapter, set_adapter_layers

KINDS = ["houlsby", "pfeiffer", "parallel"]
M = 8  # bottleneck for the d=32 tiny models


def adapters(model):
    return {name: layer for name, layer in mp.peft_layers(model).items()}


# --------------------------------------------------------------------------------------------- init
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("factory", TINY)
def test_identity_at_init(factory, kind):
    model, x = factory(), ids()
    before = out(model, x)
    mp.inject(model, mp.AdapterConfig(kind=kind, bottleneck=M))
    assert (out(model, x) - before).abs().max() <= 1e-6
    for layer in adapters(model).values():  # exact identity because up = 0; down is random so up gets a gradient
        assert torch.count_nonzero(layer.adapter.up.weight) == 0
        assert layer.adapter.down.weight.std() > 0.5e-3


def test_houlsby_own_init_is_near_identity_and_degrades_with_scale():
    x = ids()
    before = out(mp.tiny_encoder(), x)
    diffs = {}
    for std in (1e-3, 1e-1):
        model = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(bottleneck=M, zero_up=False, init_std=std))
        diffs[std] = (out(model, x) - before).abs().max().item()
    assert 0 < diffs[1e-3] <= 1e-4            # near-, not exactly, identity (Houlsby §2.1)
    assert diffs[1e-1] > 100 * diffs[1e-3]    # a large init moves the network away from the pre-trained one


# --------------------------------------------------------------------------------------------- counts
@pytest.mark.parametrize("kind, per_layer", [("houlsby", 2), ("pfeiffer", 1), ("parallel", 1)])
@pytest.mark.parametrize("factory", TINY)
def test_parameter_count_is_2md_plus_d_plus_m(factory, kind, per_layer):
    model = factory()
    d, L = model.config.hidden_size, model.config.num_hidden_layers
    mp.inject(model, mp.AdapterConfig(kind=kind, bottleneck=M))
    layers = adapters(model)
    assert len(layers) == per_layer * L
    for layer in layers.values():
        assert sum(p.numel() for p in layer.adapter.parameters()) == 2 * M * d + d + M
    assert mp.trainable_parameters(model)[0] == per_layer * L * (2 * M * d + d + M)


def test_houlsby_trains_layernorms_when_asked():
    d, L = 32, 2
    bert = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(bottleneck=M, train_layernorm=True))
    # embeddings.LayerNorm + 2 per layer, each gamma and beta (2d)
    assert mp.trainable_parameters(bert)[0] == 2 * L * (2 * M * d + d + M) + (1 + 2 * L) * 2 * d
    llama = mp.inject(mp.tiny_decoder(), mp.AdapterConfig(bottleneck=M, train_layernorm=True))
    # RMSNorm has only a gain: 2 per layer + the final norm
    assert mp.trainable_parameters(llama)[0] == 2 * L * (2 * M * d + d + M) + (2 * L + 1) * d


# --------------------------------------------------------------------------------------------- placement
PLACED = {
    ("houlsby", "tiny_encoder"): ["encoder.layer.{i}.attention.output.dense", "encoder.layer.{i}.output.dense"],
    ("pfeiffer", "tiny_encoder"): ["encoder.layer.{i}.output.dense"],
    ("parallel", "tiny_encoder"): ["encoder.layer.{i}.output"],
    ("houlsby", "tiny_decoder"): ["model.layers.{i}.self_attn.o_proj", "model.layers.{i}.mlp.down_proj"],
    ("pfeiffer", "tiny_decoder"): ["model.layers.{i}.mlp.down_proj"],
    ("parallel", "tiny_decoder"): ["model.layers.{i}.mlp"],
    ("houlsby", "tiny_gpt2"): ["transformer.h.{i}.attn.c_proj", "transformer.h.{i}.mlp.c_proj"],
    ("pfeiffer", "tiny_gpt2"): ["transformer.h.{i}.mlp.c_proj"],
    ("parallel", "tiny_gpt2"): ["transformer.h.{i}.mlp"],
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("factory", TINY)
def test_default_placement_per_model_type(factory, kind):
    model = mp.inject(factory(), mp.AdapterConfig(kind=kind, bottleneck=M))
    expected = sorted(p.format(i=i) for p in PLACED[kind, factory.__name__] for i in range(2))
    assert sorted(adapters(model)) == expected
    cls = ParallelAdapter if kind == "parallel" else SequentialAdapter
    assert all(type(layer) is cls for layer in adapters(model).values())


def test_placement_through_a_classifier_wrapper():
    from minipeft.lab.train import MeanPoolClassifier

    model = mp.inject(MeanPoolClassifier(mp.tiny_encoder()), mp.AdapterConfig(kind="pfeiffer", bottleneck=M))
    assert sorted(adapters(model)) == [f"encoder.encoder.layer.{i}.output.dense" for i in range(2)]


@pytest.mark.parametrize("factory", TINY)
def test_sequential_adapter_sees_the_projection_output(factory):
    """Hooks prove it: the adapter's input IS the wrapped projection's output, and the result is h + Δ(h)."""
    model = mp.inject(factory(), mp.AdapterConfig(kind="houlsby", bottleneck=M))
    randomise(model)
    seen = []
    for layer in adapters(model).values():
        record = {}
        layer.base_layer.register_forward_hook(lambda mod, a, o, r=record: r.__setitem__("proj_out", o))
        layer.adapter.register_forward_hook(lambda mod, a, o, r=record: r.update(adapter_in=a[0], delta=o))
        layer.register_forward_hook(lambda mod, a, o, r=record: r.__setitem__("out", o))
        seen.append(record)
    out(model, ids())
    for r in seen:
        assert torch.equal(r["adapter_in"], r["proj_out"])
        assert torch.allclose(r["out"], r["proj_out"] + r["delta"], atol=1e-6)
        assert r["delta"].abs().max() > 1e-3  # randomised: the adapter really contributes


@pytest.mark.parametrize("factory", [mp.tiny_decoder, mp.tiny_gpt2])
def test_parallel_adapter_reads_ffn_input_and_adds_to_ffn_output(factory):
    model = mp.inject(factory(), mp.AdapterConfig(kind="parallel", bottleneck=M, scaling=4.0))
    randomise(model)
    layer = next(iter(adapters(model).values()))
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        expected = layer.base_layer(x) + 4.0 * layer.adapter.up(layer.adapter.act(layer.adapter.down(x)))
        assert torch.allclose(layer(x), expected, atol=1e-6)


def test_parallel_adapter_in_bert_adds_before_residual_and_layernorm():
    """BERT's FFN = intermediate -> output(h, x); the adapter must read x (the FFN input) and add to the FFN output."""
    model = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(kind="parallel", bottleneck=M))
    randomise(model)
    block = model.encoder.layer[0]
    record = {}
    block.intermediate.register_forward_hook(lambda mod, a, o: record.update(ffn_in=a[0], h_ffn=o))
    block.output.adapter.register_forward_hook(lambda mod, a, o: record.update(adapter_in=a[0], delta=o))
    block.output.register_forward_hook(lambda mod, a, o: record.__setitem__("out", o))
    out(model, ids())
    out_module = block.output.base_layer
    assert torch.equal(record["adapter_in"], record["ffn_in"])
    with torch.no_grad():
        ffn_out = out_module.dense(record["h_ffn"])                        # (B, T, d)
        expected = out_module.LayerNorm(ffn_out + record["delta"] + record["ffn_in"])
    assert torch.allclose(record["out"], expected, atol=1e-6)


def test_only_adapter_parameters_get_gradients():
    model = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(bottleneck=M))
    randomise(model)
    model(ids())[0].pow(2).mean().backward()
    for name, p in model.named_parameters():
        if ".adapter." in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


# --------------------------------------------------------------------------------------------- choosing layers
def test_layers_field_and_targets_pick_layers():
    model = mp.inject(mp.tiny_encoder(num_hidden_layers=4), mp.AdapterConfig(bottleneck=M, layers=[2, 3]))
    assert sorted({int(n.split(".")[2]) for n in adapters(model)}) == [2, 3]
    assert len(adapters(model)) == 4  # houlsby: 2 per layer
    model = mp.inject(mp.tiny_encoder(num_hidden_layers=4),
                      mp.AdapterConfig(bottleneck=M, targets=r"encoder\.layer\.[0]\.output\.dense"))
    assert list(adapters(model)) == ["encoder.layer.0.output.dense"]


def test_set_adapter_layers_equals_training_without_them():
    """Switching layer 0's adapters off gives the network that only ever had adapters in layer 1."""
    x = ids()
    full = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(bottleneck=M))
    randomise(full)
    upper = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(bottleneck=M, layers=[1]))
    upper.load_state_dict(full.state_dict(), strict=False)  # copies layer 1's adapters
    assert set_adapter_layers(full, active=[1]) == {0: False, 1: True}
    assert (out(full, x) - out(upper, x)).abs().max() <= 1e-6
    set_adapter_layers(full, active=[])
    assert (out(full, x) - out(mp.tiny_encoder(), x)).abs().max() <= 1e-6  # all off: the pre-trained model
    set_adapter_layers(full, active=None)
    assert not torch.allclose(out(full, x), out(upper, x))
    assert "disabled" not in repr(full)


# --------------------------------------------------------------------------------------------- merge / export / save
def test_merge_and_peft_export_refuse_clearly(tmp_path):
    model = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(bottleneck=M))
    with pytest.raises(TypeError, match="cannot be merged"):
        mp.merge(model)
    with pytest.raises(TypeError, match="nonlinear"):
        next(iter(adapters(model).values())).merge()
    with pytest.raises(TypeError, match="peft has no bottleneck adapters"):
        mp.export_peft(model, tmp_path)


def test_save_and_load_round_trip(tmp_path):
    model = mp.inject(mp.tiny_decoder(), mp.AdapterConfig(kind="parallel", bottleneck=M, scaling=2.0))
    randomise(model)
    fresh = assert_round_trip(model, mp.tiny_decoder(), tmp_path, ids())  # bit-identical outputs
    assert fresh.minipeft_configs[0].kind == "parallel" and fresh.minipeft_configs[0].scaling == 2.0


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, error, phrase", [
    (dict(bottleneck=0), ValueError, "bottleneck must be a positive int"),
    (dict(bottleneck=-4), ValueError, "bottleneck must be a positive int"),
    (dict(bottleneck=2.5), TypeError, "bottleneck must be an int"),
    (dict(bottleneck=32), ValueError, "m=32 is not smaller than the hidden size d=32"),
    (dict(bottleneck=100), ValueError, "an adapter must compress"),
    (dict(kind="lora", bottleneck=M), ValueError, "Unknown adapter kind 'lora'"),
    (dict(nonlinearity="softmax", bottleneck=M), ValueError, "Unknown nonlinearity 'softmax'"),
    (dict(scaling=0, bottleneck=M), ValueError, "scaling must be a positive number"),
    (dict(scaling=-1.0, bottleneck=M), ValueError, "scaling must be a positive number"),
    (dict(init_std=-1e-3, bottleneck=M), ValueError, "init_std must be a number ≥ 0"),
    (dict(layers=[], bottleneck=M), ValueError, "non-empty list of layer indices"),
    (dict(layers=[0], targets=["dense"], bottleneck=M), ValueError, "not both"),
    (dict(targets=["attention"], bottleneck=M), TypeError, "wraps an output projection"),
    (dict(kind="parallel", targets=["query"], bottleneck=M), TypeError, "wraps a whole FFN block"),
    (dict(layers=[7], bottleneck=M), ValueError, "matched no module"),
])
def test_bad_inputs(kwargs, error, phrase):
    assert_inject_refused(mp.tiny_encoder(), mp.AdapterConfig(**kwargs), error, phrase)  # nothing was changed


def test_set_adapter_layers_bad_inputs():
    with pytest.raises(ValueError, match="no bottleneck adapters"):
        set_adapter_layers(mp.tiny_encoder(), active=[0])
    model = mp.inject(mp.tiny_encoder(), mp.AdapterConfig(bottleneck=M))
    with pytest.raises(ValueError, match=r"Layers \[5\] have no adapter; layers with adapters: \[0, 1\]"):
        set_adapter_layers(model, active=[1, 5])
    assert all(layer.enabled for layer in adapters(model).values())  # nothing was switched


def test_adapter_module_alone():
    a = Adapter(d=16, m=4, nonlinearity="gelu", scaling=0.5, init_std=1e-2, zero_up=False)
    h = torch.randn(3, 16)
    assert torch.allclose(a(h), 0.5 * a.up(torch.nn.functional.gelu(a.down(h))))


# --------------------------------------------------------------------------------------------- real model
@pytest.mark.integration
def test_minilm_houlsby_count_and_learning():
    model, tok = minilm_classifier(mp.AdapterConfig(bottleneck=64, modules_to_save=["head"]))
    d, m = 384, 64
    assert mp.trainable_parameters(model)[0] == 6 * 2 * (2 * m * d + d + m) + (d * 2 + 2)  # + the head
    result = learn_rotten_tomatoes(model, tok)  # 384 reviews, 1 epoch, lr 1e-2, max_length 48; 200 to evaluate
    assert result.accuracy >= 0.65, result.accuracy  # measured 0.69 after 12 steps
    assert loss_fell(result)
