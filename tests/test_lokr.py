"""LoKr: peft's factor shapes, ΔW = kron(w1, w2) · alpha/r, merge, peft equality, bad inputs."""

import copy
from functools import partial

import pytest
import torch

import helpers
import minipeft as mp
from helpers import (MODELS, assert_inject_refused, assert_matches_peft, assert_merges, assert_round_trip,
                     learn_rotten_tomatoes, loss_fell, minilm_classifier, out)
from minipeft.methods.lokr import LoKrConfig, LoKrLinear

peft = pytest.importorskip("peft")
from peft import LoKrConfig as PeftLoKrConfig  # noqa: E402
from peft import get_peft_model  # noqa: E402

X = torch.randint(0, 100, (2, 7))
LLAMA_TARGETS = ["q_proj", "v_proj", "up_proj", "down_proj"]   # 32×32, 16×32, 64×32, 32×64


randomise = partial(helpers.randomise, std=0.3)


@pytest.mark.parametrize("kind", list(MODELS))
def test_identity_at_init(kind):
    base = MODELS[kind]()
    assert torch.equal(out(mp.inject(copy.deepcopy(base), LoKrConfig(r=2)), X), out(base, X))  # w1 = 0 -> ΔW = 0


@pytest.mark.parametrize("r, factor, both", [(1, -1, False), (2, -1, False), (2, -1, True), (8, -1, False),
                                             (2, 4, False), (3, 2, True), (4, 8, True)])
def test_factor_shapes_equal_peft(r, factor, both):
    base = mp.tiny_decoder()
    ours = mp.inject(copy.deepcopy(base), LoKrConfig(r=r, decompose_factor=factor, decompose_both=both,
                                                     targets=LLAMA_TARGETS))
    theirs = get_peft_model(copy.deepcopy(base), PeftLoKrConfig(r=r, decompose_factor=factor, decompose_both=both,
                                                               target_modules=LLAMA_TARGETS))
    our_shapes = {f"{n}.lokr_{p}": tuple(t.shape) for n, l in mp.peft_layers(ours).items()
                  for p, t in l.peft_named_parameters()}
    peft_shapes = {n.removeprefix("base_model.model.").removesuffix(".default"): tuple(t.shape)
                   for n, t in theirs.named_parameters() if t.requires_grad}
    assert our_shapes == peft_shapes


def test_parameter_count_closed_form():
    # 32×32 q_proj, r=2, factors near √32: 32 = 4·8 -> w1 (4×4) full, w2 (8×8) low-rank: 8·2 + 2·8
    model = mp.inject(mp.tiny_encoder(), LoKrConfig(r=2, targets=["query"]))
    assert mp.trainable_parameters(model)[0] == 2 * (4 * 4 + 2 * (8 + 8))
    # r=4 is not < max(8, 8)/2, so w2 is a full 8×8 matrix
    model = mp.inject(mp.tiny_encoder(), LoKrConfig(r=4, targets=["query"]))
    assert mp.trainable_parameters(model)[0] == 2 * (4 * 4 + 8 * 8)


def test_delta_weight_and_forward():
    model = mp.inject(mp.tiny_gpt2(), LoKrConfig(r=2, alpha=3, decompose_both=True))  # Conv1D c_attn, 96×32
    randomise(model)
    layer = model.get_submodule("transformer.h.0.attn.c_attn")
    w1, w2 = layer.factors()
    expected = torch.kron(w1, w2) * (3 / 2)
    assert expected.shape == (96, 32) and torch.allclose(layer.delta_weight(), expected, atol=1e-7)
    h = torch.randn(2, 4, 32)
    assert torch.allclose(layer(h), layer.base_layer(h) + h @ expected.T, atol=1e-5)
    # rank multiplies: rank(w1 ⊗ w2) = rank(w1) · rank(w2), with w2 of rank r
    ranks = [int(torch.linalg.matrix_rank(t)) for t in (w1, w2, layer.delta_weight())]
    assert ranks[2] == ranks[0] * ranks[1] and ranks[1] == 2


def test_merge_unmerge_round_trip():
    model = mp.inject(mp.tiny_decoder(), LoKrConfig(r=2, targets=LLAMA_TARGETS))
    randomise(model, std=0.1)
    assert_merges(model, X)  # outputs within 1e-5, W0 back within 1e-6, mp.merge leaves an ordinary model


@pytest.mark.parametrize("kind, config", [
    ("bert", LoKrConfig(r=2, alpha=4)),
    ("llama", LoKrConfig(r=2, alpha=6, decompose_both=True, decompose_factor=2, targets=LLAMA_TARGETS)),
    ("llama", LoKrConfig(r=8, targets=["k_proj", "o_proj"])),
])
def test_export_equals_peft_lokr(kind, config, tmp_path):
    base = MODELS[kind]()
    model = mp.inject(copy.deepcopy(base), config)
    randomise(model)
    assert_matches_peft(model, lambda: copy.deepcopy(base), tmp_path, input_ids=X)  # within 1e-5
    assert (out(model, X) - out(base, X)).abs().max() > 1e-2  # the adapter does change the outputs


def test_save_load_bit_identical(tmp_path):
    base = mp.tiny_decoder()
    model = mp.inject(copy.deepcopy(base), LoKrConfig(r=2, decompose_both=True, targets=LLAMA_TARGETS))
    randomise(model)
    fresh = assert_round_trip(model, copy.deepcopy(base), tmp_path, X)  # bit-identical outputs
    assert isinstance(fresh.get_submodule("model.layers.0.mlp.up_proj"), LoKrLinear)


@pytest.mark.parametrize("config, error, match", [
    (LoKrConfig(r=0), ValueError, "positive integer"),
    (LoKrConfig(r=1.5), ValueError, "positive integer"),
    (LoKrConfig(alpha=-2), ValueError, "alpha"),
    (LoKrConfig(decompose_factor=0), ValueError, "decompose_factor"),
    (LoKrConfig(decompose_factor=-3), ValueError, "decompose_factor"),
    (LoKrConfig(decompose_factor=2.0), ValueError, "decompose_factor"),
    (LoKrConfig(decompose_both="yes"), TypeError, "True or False"),
    (LoKrConfig(targets=["attention"]), TypeError, "wraps nn.Linear"),
])
def test_bad_inputs(config, error, match):
    assert_inject_refused(mp.tiny_encoder(), config, error, match)


def test_conv1d_export_refused(tmp_path):
    with pytest.raises(TypeError, match="Conv1D"):
        mp.export_peft(mp.inject(mp.tiny_gpt2(), LoKrConfig(r=2)), tmp_path)


@pytest.mark.integration
def test_lokr_learns_rotten_tomatoes():
    model, tok = minilm_classifier(LoKrConfig(r=4, modules_to_save=["head"]))
    result = learn_rotten_tomatoes(model, tok)  # 384 reviews, 1 epoch, lr 1e-2; 200 to evaluate
    assert result.accuracy >= 0.62, result.accuracy  # measured 0.705 (chance 0.5, 12 steps)
    assert loss_fell(result)
