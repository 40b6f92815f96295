"""KronA / KronA^B / KronA^B_res: the vec trick, Kronecker rank, factor shapes, merge, gradients, bad inputs."""

import copy

import pytest
import torch

import minipeft as mp
from helpers import (MODELS, assert_inject_refused, assert_merges, assert_round_trip, learn_rotten_tomatoes, loss_fell,
                     minilm_classifier, out, randomise)
from minipeft.methods.kronecker import KronABConfig, KronABLayer, KronAConfig, KronALinear, factorization, kron_matvec

X = torch.randint(0, 100, (2, 7))


# --------------------------------------------------------------------------------------------- the algebra
@pytest.mark.parametrize("a, b", [((3, 4), (5, 6)), ((1, 7), (4, 1)), ((6, 2), (2, 9)), ((4, 4), (8, 8))])
def test_vec_trick_equals_materialised_kron(a, b):
    A, B = torch.randn(*a, dtype=torch.float64), torch.randn(*b, dtype=torch.float64)
    x = torch.randn(2, 5, a[1] * b[1], dtype=torch.float64)                 # (B, T, d_in)
    assert torch.allclose(kron_matvec(A, B, x), x @ torch.kron(A, B).T, atol=1e-12)


def test_kron_rank_is_product_of_ranks():
    A = torch.randn(4, 2, dtype=torch.float64) @ torch.randn(2, 5, dtype=torch.float64)   # rank 2
    B = torch.randn(6, 3, dtype=torch.float64) @ torch.randn(3, 7, dtype=torch.float64)   # rank 3
    assert int(torch.linalg.matrix_rank(torch.kron(A, B))) == 2 * 3
    layer = mp.inject(mp.tiny_encoder(), KronAConfig()).get_submodule("encoder.layer.0.attention.self.query")
    with torch.no_grad():
        layer.kron.B.normal_()
    assert layer.kron.rank() == int(torch.linalg.matrix_rank(layer.delta_weight())) == 32  # full rank, 80 params


def test_gradcheck_float64():
    A = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    B = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(kron_matvec, (A, B, x))


def test_factorization_matches_peft():
    from peft.tuners.lokr.layer import factorization as peft_factorization
    for d in [1, 2, 7, 32, 96, 127, 128, 192, 384, 576, 1536]:
        for f in [-1, 1, 2, 3, 4, 5, 8, 16, 24, 64]:
            assert factorization(d, f) == peft_factorization(d, f), (d, f)


# --------------------------------------------------------------------------------------------- KronA
@pytest.mark.parametrize("kind", list(MODELS))
def test_krona_identity_at_init_and_counts(kind):
    base = MODELS[kind]()
    model = mp.inject(copy.deepcopy(base), KronAConfig())
    assert torch.equal(out(model, X), out(base, X))  # B = 0 -> ΔW = 0
    shapes = {(tuple(l.kron.A.shape), tuple(l.kron.B.shape)) for l in mp.peft_layers(model).values()}
    # near √d: 32 = 4·8; Llama's v_proj has d_out = 16 = 4·4 (2 KV heads); GPT-2's fused c_attn d_out = 96 = 8·12
    expected_shapes = {"bert": {((4, 4), (8, 8))}, "llama": {((4, 4), (8, 8)), ((4, 4), (4, 8))},
                       "gpt2": {((8, 4), (12, 8))}}[kind]
    assert shapes == expected_shapes
    # a1·a2 + b1·b2 per matrix: bert 4 × (16 + 64); llama 2 × (16 + 64) + 2 × (16 + 32); gpt2 2 × (32 + 96)
    assert mp.trainable_parameters(model)[0] == {"bert": 320, "llama": 256, "gpt2": 256}[kind]


def test_default_factor_shapes_of_minilm_size():
    layer = KronAConfig().wrap(torch.nn.Linear(384, 384), "q")
    assert layer.kron.A.shape == (16, 16) and layer.kron.B.shape == (24, 24)   # 832 params vs 147,456 in W
    layer = KronAConfig(a_shape=(2, 48)).wrap(torch.nn.Linear(384, 192), "k")   # user-set, non-square
    assert layer.kron.A.shape == (2, 48) and layer.kron.B.shape == (96, 8)


def test_krona_forward_equals_materialised_update():
    model = mp.inject(mp.tiny_gpt2(), KronAConfig(scale=2.5))  # Conv1D: weight stored (in, out)
    randomise(model)
    layer = model.get_submodule("transformer.h.0.attn.c_attn")
    h = torch.randn(3, 5, 32)
    expected = layer.base_layer(h) + h @ (2.5 * torch.kron(layer.kron.A, layer.kron.B)).T
    assert torch.allclose(layer(h), expected, atol=1e-6)


@pytest.mark.parametrize("kind, targets", [("llama", ["q_proj", "k_proj", "v_proj", "down_proj"]),
                                           ("gpt2", ["c_attn", "c_proj"])])   # Conv1D: W stored transposed
def test_krona_merge_unmerge_round_trip(kind, targets):
    model = mp.inject(MODELS[kind](), KronAConfig(targets=targets))
    randomise(model)
    assert_merges(model, X)  # outputs within 1e-5 (unmerged: allclose to 1e-6), W0 back within 1e-6


def test_krona_save_load_bit_identical(tmp_path):
    base = mp.tiny_encoder()
    model = mp.inject(copy.deepcopy(base), KronAConfig(a_shape=(2, 4)))
    randomise(model)
    fresh = assert_round_trip(model, copy.deepcopy(base), tmp_path, X)  # bit-identical outputs
    assert fresh.get_submodule("encoder.layer.1.attention.self.value").kron.A.shape == (2, 4)


def test_krona_has_no_peft_export(tmp_path):
    model = mp.inject(mp.tiny_encoder(), KronAConfig())
    with pytest.raises(TypeError, match="LoKr"):
        mp.export_peft(model, tmp_path)


# --------------------------------------------------------------------------------------------- KronA^B (+ res)
@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("residual", [False, True])
def test_kronab_identity_at_init_and_placement(kind, residual):
    base = MODELS[kind]()
    model = mp.inject(copy.deepcopy(base), KronABConfig(residual=residual))
    layers = mp.peft_layers(model)
    assert len(layers) == 2 and all(isinstance(l, KronABLayer) for l in layers.values())
    assert not any("attention" in n for n in layers)  # BERT: the FFN's 'output', not 'attention.output'
    assert torch.equal(out(model, X), out(base, X))
    assert mp.trainable_parameters(model)[0] == 2 * (4 * 4 + 8 * 8 + residual)


def test_kronab_adds_to_the_ffn_output_llama():
    model = mp.inject(mp.tiny_decoder(), KronABConfig(residual=True, scale=0.5))
    randomise(model)
    layer = model.get_submodule("model.layers.0.mlp")
    x = torch.randn(2, 3, 32)
    delta = 0.5 * torch.kron(layer.kron.A, layer.kron.B)
    expected = layer.base_layer(x) + x @ delta.T + layer.res_scale * x   # FFN(x) + s (A⊗B) x + γ x
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_kronab_adds_to_the_ffn_output_bert():
    model = mp.inject(mp.tiny_encoder(), KronABConfig())
    randomise(model)
    layer = model.get_submodule("encoder.layer.0.output")          # BertOutput(h_ffn, x)
    h_ffn, x = torch.randn(2, 3, 64), torch.randn(2, 3, 32)
    ffn = layer.base_layer.dropout(layer.base_layer.dense(h_ffn))
    delta = x @ torch.kron(layer.kron.A, layer.kron.B).T
    expected = layer.base_layer.LayerNorm(ffn + delta + x)           # LN(FFN(x) + Δ(x) + residual x)
    assert torch.allclose(layer(h_ffn, x), expected, atol=1e-5)


def test_kronab_res_scale_learns_and_cannot_merge():
    model = mp.inject(mp.tiny_decoder(), KronABConfig(residual=True))
    model(input_ids=X)[0].sum().backward()
    layer = model.get_submodule("model.layers.0.mlp")
    assert layer.res_scale.grad is not None and layer.res_scale.grad.abs() > 0  # γ gets a gradient at γ = 0
    assert layer.kron.B.grad.abs().sum() > 0 and layer.kron.A.grad.abs().sum() == 0  # only the zero factor moves
    with pytest.raises(TypeError, match="nonlinear"):
        layer.merge()
    with pytest.raises(TypeError, match="cannot be merged"):
        mp.merge(model)


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("config, error, match", [
    (KronAConfig(a_shape=(5, 4)), ValueError, "does not tile"),
    (KronAConfig(a_shape=(4, 3)), ValueError, "divisors"),
    (KronAConfig(a_shape=(4,)), TypeError, "two ints"),
    (KronAConfig(a_shape=(4.0, 4)), TypeError, "two ints"),
    (KronAConfig(a_shape=(0, 4)), ValueError, "positive"),
    (KronAConfig(scale=0), ValueError, "scale"),
    (KronAConfig(scale="1"), TypeError, "KronAConfig.scale must be a number"),
    (KronAConfig(dropout=1.0), ValueError, "probability"),
    (KronAConfig(targets=["attention"]), TypeError, "KronABConfig"),
    (KronABConfig(targets=["query"]), TypeError, "KronAConfig"),
    (KronABConfig(a_shape=(3, 3)), ValueError, "does not tile"),
    (KronABConfig(residual="yes"), TypeError, "True or False"),
])
def test_bad_inputs(config, error, match):
    assert_inject_refused(mp.tiny_encoder(), config, error, match)


def test_kronab_res_save_load_bit_identical(tmp_path):
    base = mp.tiny_encoder()
    model = mp.inject(copy.deepcopy(base), KronABConfig(residual=True, a_shape=(8, 2)))
    randomise(model)
    fresh = assert_round_trip(model, copy.deepcopy(base), tmp_path, X)  # bit-identical outputs
    layer = fresh.get_submodule("encoder.layer.1.output")
    assert layer.res_scale.shape == () and layer.kron.B.shape == (4, 16)


def test_kronab_has_no_peft_export(tmp_path):
    with pytest.raises(TypeError, match="no KronA"):
        mp.export_peft(mp.inject(mp.tiny_decoder(), KronABConfig()), tmp_path)


# --------------------------------------------------------------------------------------------- it learns
@pytest.mark.integration
@pytest.mark.parametrize("config, measured", [(KronAConfig(modules_to_save=["head"]), 0.685),
                                              (KronABConfig(modules_to_save=["head"]), 0.685)])
def test_kron_learns_rotten_tomatoes(config, measured):
    model, tok = minilm_classifier(config)
    assert isinstance(model.get_submodule("encoder.encoder.layer.0." + (
        "attention.self.query" if isinstance(config, KronAConfig) else "output")), (KronALinear, KronABLayer))
    result = learn_rotten_tomatoes(model, tok)  # 384 reviews, 1 epoch, lr 1e-2; 200 to evaluate
    assert result.accuracy >= 0.62, (result.accuracy, measured)  # chance 0.5, 12 steps
    assert loss_fell(result)
