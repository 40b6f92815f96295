"""IA3 (minipeft/ia3.py): which activations are scaled, counts, exact merge, peft equality, bad inputs."""

import warnings

import pytest
import torch
from torch import nn

import minipeft as mp
from minipeft.ia3 import IA3Linear

TINY = [mp.tiny_encoder, mp.tiny_decoder, mp.tiny_gpt2]


def ids(n=2, t=7):
    return torch.randint(3, 100, (n, t))


def out(model, x):
    with torch.no_grad():
        return model(x)[0]


def randomise(model, std=0.1):
    """l = 1 + noise for every IA3 vector (other trainable parameters: plain noise)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_((1.0 if name.endswith("ia3_l") else 0.0) + std * torch.randn_like(p))


def peft_from(model, factory, tmp_path):
    import peft

    mp.export_peft(model, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.PeftModel.from_pretrained(factory(), str(tmp_path)).eval()


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
    expected = out(model, x)
    w0 = {n: {k: v.clone() for k, v in m.base_layer.state_dict().items()} for n, m in ia3(model).items()}
    for layer in ia3(model).values():
        layer.merge()
    assert (out(model, x) - expected).abs().max() <= 1e-5
    for n, layer in ia3(model).items():
        layer.unmerge()
        for k, v in layer.base_layer.state_dict().items():  # weight and bias
            assert (v - w0[n][k]).abs().max() <= 1e-6
    mp.merge(model)
    assert not mp.peft_layers(model) and (out(model, x) - expected).abs().max() <= 1e-5


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
    theirs = peft_from(model, factory, tmp_path)
    assert (out(theirs, x) - out(model, x)).abs().max() <= 1e-5


def test_matches_peft_with_explicit_targets_and_a_head(tmp_path):
    from minipeft.train import MeanPoolClassifier

    def factory():
        torch.manual_seed(1)
        return MeanPoolClassifier(mp.tiny_encoder()).eval()

    config = mp.IA3Config(targets=["value", "intermediate.dense"], feedforward=["intermediate.dense"],
                          modules_to_save=["head"])
    model, x = mp.inject(factory(), config), ids()
    randomise(model)
    theirs = peft_from(model, factory, tmp_path)
    assert (out(theirs, x) - out(model, x)).abs().max() <= 1e-5


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
    theirs = peft_from(model, lambda: mp.load_encoder()[0], tmp_path)
    with torch.no_grad():
        assert (theirs(**batch)[0] - model(**batch)[0]).abs().max() <= 1e-5


@pytest.mark.integration
def test_ia3_learns():
    """With the classifier head frozen at random, only l can lower the loss: IA3 fits 32 reviews."""
    from minipeft.data import rotten_tomatoes, subsample
    from minipeft.train import MeanPoolClassifier, TrainConfig, fit

    encoder, tok = mp.load_encoder()
    train = subsample(rotten_tomatoes()["train"], 32)
    model = mp.inject(MeanPoolClassifier(encoder), mp.IA3Config())
    result = fit(model, tok, train, train, TrainConfig(epochs=8, batch_size=16, lr=0.1, max_length=32,
                                                       warmup_ratio=0, progress=False))
    assert result.accuracy >= 0.9 and sum(result.losses[-3:]) < 0.5 * sum(result.losses[:3]), result.losses
