"""LoHa / FedPara: the Hadamard update, its rank, gradients, merge, peft equality, bad inputs."""

import copy
from functools import partial

import pytest
import torch

import helpers
import minipeft as mp
from helpers import (MODELS, assert_inject_refused, assert_matches_peft, assert_merges, assert_round_trip,
                     learn_rotten_tomatoes, loss_fell, minilm_classifier, out)
from minipeft.methods.hadamard import LoHaConfig, LoHaLinear, hadamard_delta, rank_comparison

peft = pytest.importorskip("peft")
from peft import LoHaConfig as PeftLoHaConfig  # noqa: E402
from peft import get_peft_model  # noqa: E402

X = torch.randint(0, 100, (2, 7))


randomise = partial(helpers.randomise, std=0.3)


@pytest.mark.parametrize("kind", list(MODELS))
def test_identity_at_init_and_parameter_count(kind):
    base = MODELS[kind]()
    model = mp.inject(copy.deepcopy(base), LoHaConfig(r=3))
    assert torch.equal(out(model, X), out(base, X))  # Y2 = 0 -> ΔW = 0
    dims = [(l.out_features, l.in_features) for l in mp.peft_layers(model).values()]
    assert mp.trainable_parameters(model)[0] == sum(2 * 3 * (a + b) for a, b in dims)  # 2r(d_in + d_out)


def test_delta_weight_and_forward():
    model = mp.inject(mp.tiny_gpt2(), LoHaConfig(r=2, alpha=5))  # Conv1D: weight stored (in, out)
    randomise(model)
    layer = model.get_submodule("transformer.h.1.attn.c_attn")
    expected = (layer.X1 @ layer.Y1) * (layer.X2 @ layer.Y2) * (5 / 2)   # (96, 32)
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-7)
    h = torch.randn(2, 3, 32)
    assert torch.allclose(layer(h), layer.base_layer(h) + h @ expected.T, atol=1e-6)


def test_rank_reaches_r_squared():
    result = rank_comparison(32, 48, r=4)
    assert result == {"params": 2 * 4 * 80, "loha_rank": 16, "loha_bound": 16, "lora_rank": 8}
    assert rank_comparison(12, 40, r=5)["loha_rank"] == 12  # capped by min(d_out, d_in)
    layer = mp.inject(mp.tiny_encoder(), LoHaConfig(r=3)).get_submodule("encoder.layer.0.attention.self.query")
    with torch.no_grad():
        layer.Y2.normal_()
    assert int(torch.linalg.matrix_rank(layer.delta_weight())) == 9  # a "trained" layer: rank r² = 9, not r = 3


def test_gradcheck_hadamard_backward():
    args = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in [(6, 2), (2, 5), (6, 2), (2, 5)]]
    assert torch.autograd.gradcheck(hadamard_delta, args)


def test_gradients_equal_peft_custom_backward():
    from peft.tuners.loha.layer import HadaWeight

    ours = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in [(7, 3), (3, 4), (7, 3), (3, 4)]]
    theirs = [t.detach().clone().requires_grad_() for t in ours]
    upstream = torch.randn(7, 4, dtype=torch.float64)
    (hadamard_delta(*ours) * 1.5 * upstream).sum().backward()
    (HadaWeight.apply(*theirs, torch.tensor(1.5, dtype=torch.float64)) * upstream).sum().backward()
    assert all(torch.allclose(a.grad, b.grad, atol=1e-12) for a, b in zip(ours, theirs))


def test_only_y2_learns_at_the_first_step():
    model = mp.inject(mp.tiny_encoder(), LoHaConfig(r=2))
    model(input_ids=X)[0].pow(2).sum().backward()
    layer = model.get_submodule("encoder.layer.1.attention.self.value")
    assert layer.Y2.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() == 0 for p in (layer.X1, layer.Y1, layer.X2))


def test_merge_unmerge_round_trip():
    model = mp.inject(mp.tiny_decoder(), LoHaConfig(r=4, targets=["q_proj", "v_proj", "up_proj"]))
    randomise(model, std=0.1)
    assert_merges(model, X)  # outputs within 1e-5, W0 back within 1e-6, mp.merge leaves an ordinary model


@pytest.mark.parametrize("kind, targets", [("bert", None), ("llama", ["q_proj", "k_proj", "down_proj"])])
def test_export_equals_peft_loha(kind, targets, tmp_path):
    base = MODELS[kind]()
    model = mp.inject(copy.deepcopy(base), LoHaConfig(r=3, alpha=6, targets=targets))
    randomise(model)
    assert_matches_peft(model, lambda: copy.deepcopy(base), tmp_path, input_ids=X)  # within 1e-5
    assert out(model, X).sub(out(base, X)).abs().max() > 1e-2  # the adapter does change the outputs
    # and peft's own LoHa, built from scratch, has our parameter shapes
    fresh = get_peft_model(copy.deepcopy(base),
                           PeftLoHaConfig(r=3, alpha=6, target_modules=targets or ["query", "value"]))
    assert mp.trainable_parameters(model)[0] == sum(p.numel() for p in fresh.parameters() if p.requires_grad)


def test_save_load_bit_identical(tmp_path):
    base = mp.tiny_encoder()
    model = mp.inject(copy.deepcopy(base), LoHaConfig(r=2))
    randomise(model)
    fresh = assert_round_trip(model, copy.deepcopy(base), tmp_path, X)  # bit-identical outputs
    assert isinstance(fresh.get_submodule("encoder.layer.0.attention.self.query"), LoHaLinear)


@pytest.mark.parametrize("config, error, match", [
    (LoHaConfig(r=0), ValueError, "positive integer"),
    (LoHaConfig(r=2.5), ValueError, "positive integer"),
    (LoHaConfig(r=True), ValueError, "positive integer"),
    (LoHaConfig(alpha=0), ValueError, "alpha"),
    (LoHaConfig(alpha="8"), TypeError, "LoHaConfig.alpha must be a number"),
    (LoHaConfig(r=40), ValueError, "r ≤ 32"),
    (LoHaConfig(targets=["attention"]), TypeError, "wraps nn.Linear"),
    (LoHaConfig(targets=["nope"]), ValueError, "matched no module"),
])
def test_bad_inputs(config, error, match):
    assert_inject_refused(mp.tiny_encoder(), config, error, match)


def test_conv1d_export_refused(tmp_path):
    with pytest.raises(TypeError, match="Conv1D"):
        mp.export_peft(mp.inject(mp.tiny_gpt2(), LoHaConfig(r=2)), tmp_path)


@pytest.mark.integration
def test_loha_learns_rotten_tomatoes():
    model, tok = minilm_classifier(LoHaConfig(r=4, modules_to_save=["head"]))
    result = learn_rotten_tomatoes(model, tok)  # 384 reviews, 1 epoch, lr 1e-2; 200 to evaluate
    assert result.accuracy >= 0.62, result.accuracy  # measured 0.69 (chance 0.5, 12 steps)
    assert loss_fell(result)
