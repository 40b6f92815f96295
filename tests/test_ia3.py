"""IA3 (minipeft/ia3.py): which activations are scaled, counts, exact merge, peft equality, bad inputs."""

from functools import partial

import pytest
import torch
from torch import nn

import helpers
import minipeft as mp
from helpers import (TINY, assert_matches_peft, assert_merges, classifier, ids, learn_rotten_tomatoes,
                     minilm_classifier, out)
from minipeft.methods.ia3 import IA3Linear

randomise = partial(helpers.randomise, ones=["ia3_l"])  # l = 1 + noise for every IA3 vector, others plain noise


def ia3(model):
    return {n: m for n, m in mp.peft_layers(model).items() if isinstance(m, IA3Linear)}


# --------------------------------------------------------------------------------------------- the update
@pytest.mark.parametrize("factory", TINY)
def test_identity_at_init(factory):
    model, x = factory(), ids()
    before = out(model, x)
    mp.inject(model, mp.IA3Config())
    assert (out(model, x) - before).abs().max() <= 1e-6
    assert all(torch.equal(m.ia3_l, torch.ones_like(m.ia3_l)) for m in ia3(model).values())


def test_output_and_input_scaling():
    base = nn.Linear(6, 4)
    x = torch.randn(3, 6)
    out_layer, in_layer = IA3Linear(base, feedforward=False), IA3Linear(base, feedforward=True)
    randomise(out_layer), randomise(in_layer)
    assert out_layer.ia3_l.shape == (4,) and in_layer.ia3_l.shape == (6,)
    assert torch.allclose(out_layer(x), out_layer.ia3_l * (x @ base.weight.T + base.bias), atol=1e-6)
    assert torch.allclose(in_layer(x), (in_layer.ia3_l * x) @ base.weight.T + base.bias, atol=1e-6)


def test_default_feedforward_layers_follow_peft():
    model = mp.inject(mp.tiny_encoder(), mp.IA3Config())
    ff = sorted(n for n, m in ia3(model).items() if m.feedforward)
    rest = sorted(n for n, m in ia3(model).items() if not m.feedforward)
    assert ff == sorted(f"encoder.layer.{i}.{p}output.dense" for i in range(2) for p in ("", "attention."))
    assert rest == sorted(f"encoder.layer.{i}.attention.self.{w}" for i in range(2) for w in ("key", "value"))


def test_paper_recipe_with_regex_targets():
    ffn = r".*layer\.\d+\.output\.dense"
    model = mp.inject(mp.tiny_encoder(), mp.IA3Config(targets=r".*\.(key|value)|" + ffn, feedforward=ffn))
    assert sorted(n for n, m in ia3(model).items() if m.feedforward) == [f"encoder.layer.{i}.output.dense"
                                                                          for i in range(2)]
    assert mp.trainable_parameters(model)[0] == 2 * (32 + 32 + 64)  # l_k, l_v, l_ff per layer, as in §3.3


@pytest.mark.parametrize("factory, per_layer", [
    (mp.tiny_encoder, 32 + 32 + 32 + 64),  # l_k, l_v, attention.output.dense input (peft quirk), l_ff (d_ff=64)
    (mp.tiny_decoder, 16 + 16 + 64),       # k_proj, v_proj outputs (2 KV heads of 8), down_proj input
    (mp.tiny_gpt2, 96 + 128),              # fused c_attn output (q,k,v), mlp.c_proj input (4d)
])
def test_closed_form_parameter_count(factory, per_layer):
    assert mp.trainable_parameters(mp.inject(factory(), mp.IA3Config()))[0] == 2 * per_layer


# --------------------------------------------------------------------------------------------- merge
@pytest.mark.parametrize("factory", TINY)
def test_merge_keeps_outputs_and_unmerge_restores_w0(factory):
    model, x = mp.inject(factory(), mp.IA3Config()), ids()
    randomise(model)
    assert_merges(model, x)  # merged and unmerged outputs within 1e-5, weight and bias back within 1e-6


def test_delta_weight_is_the_additive_view():
    layer = IA3Linear(nn.Linear(6, 4), feedforward=True)
    randomise(layer)
    w0 = layer.base_layer.weight.clone()
    assert torch.allclose(layer.delta_weight(), w0 * (layer.ia3_l - 1), atol=1e-7)
    layer.merge()
    assert torch.allclose(layer.delta_weight(), w0 * (layer.ia3_l - 1), atol=1e-6)


def test_unmerge_refuses_a_zero_scale():
    layer = IA3Linear(nn.Linear(4, 4), feedforward=False)
    with torch.no_grad():
        layer.ia3_l[0] = 0.0
    layer.merge()
    with pytest.raises(ValueError, match="some entries of l are 0"):
        layer.unmerge()


# --------------------------------------------------------------------------------------------- peft equality
@pytest.mark.parametrize("factory", TINY)
def test_matches_peft(factory, tmp_path):
    model, x = mp.inject(factory(), mp.IA3Config()), ids()
    randomise(model)
    assert_matches_peft(model, factory, tmp_path, input_ids=x)  # within 1e-5


def test_matches_peft_with_explicit_targets_and_a_head(tmp_path):
    config = mp.IA3Config(targets=["value", "intermediate.dense"], feedforward=["intermediate.dense"],
                          modules_to_save=["head"])
    model, x = mp.inject(classifier(), config), ids()
    randomise(model)
    assert_matches_peft(model, classifier, tmp_path, input_ids=x)


# --------------------------------------------------------------------------------------------- bad inputs
def test_feedforward_must_be_a_subset_of_targets():
    with pytest.raises(ValueError, match=r"feedforward \['output.dense'\] must also appear in targets"):
        mp.inject(mp.tiny_encoder(), mp.IA3Config(targets=["key", "value"], feedforward=["output.dense"]))


def test_feedforward_type():
    with pytest.raises(TypeError, match="feedforward must be a list of module names or a regex"):
        mp.inject(mp.tiny_encoder(), mp.IA3Config(feedforward=3))


def test_unknown_architecture_needs_feedforward():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"pass feedforward=\[...\]"):
        mp.inject(model, mp.IA3Config(targets=["0", "2"]))
    assert not mp.peft_layers(model)
    mp.inject(model, mp.IA3Config(targets=["0", "2"], feedforward=["2"]))
    assert [m.feedforward for m in mp.peft_layers(model).values()] == [False, True]


def test_non_linear_target():
    with pytest.raises(TypeError, match="IA3 scales nn.Linear .* is of type LayerNorm"):
        mp.inject(mp.tiny_encoder(), mp.IA3Config(targets=["attention.output.LayerNorm"], feedforward=[]))


# --------------------------------------------------------------------------------------------- real models
@pytest.mark.integration
def test_minilm_peft_equality(tmp_path):
    model, tok = mp.load_encoder()
    mp.inject(model, mp.IA3Config())
    assert mp.trainable_parameters(model)[0] == 6 * (384 + 384 + 384 + 1536)
    randomise(model, std=0.05)
    batch = tok(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    assert_matches_peft(model, lambda: mp.load_encoder()[0], tmp_path, **batch)


@pytest.mark.integration
def test_ia3_learns():
    """With the classifier head frozen at random, only l can lower the loss: IA3 fits 32 reviews."""
    model, tok = minilm_classifier(mp.IA3Config())
    result = learn_rotten_tomatoes(model, tok, train=32, val=None, epochs=8, batch_size=16, lr=0.1,
                                   max_length=32, warmup_ratio=0)
    assert result.accuracy >= 0.9 and sum(result.losses[-3:]) < 0.5 * sum(result.losses[:3]), result.losses
