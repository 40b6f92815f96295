"""LoRA (minipeft/lora.py): the update, its parameter count, merge, peft equality, bad inputs."""

import math

import pytest
import torch
from torch import nn

import minipeft as mp
from helpers import (TINY, assert_matches_peft, assert_merges, classifier, ids, learn_rotten_tomatoes,
                     minilm_classifier, out, randomise)
from minipeft.methods.lora import LoRALinear


# --------------------------------------------------------------------------------------------- the update
@pytest.mark.parametrize("factory", TINY)
def test_identity_at_init(factory):
    model, x = factory(), ids()
    before = out(model, x)
    mp.inject(model, mp.LoRAConfig(r=4))
    assert (out(model, x) - before).abs().max() <= 1e-6


def test_initialisation_follows_peft():
    layer = LoRALinear(nn.Linear(64, 48), r=4, alpha=8)
    assert torch.count_nonzero(layer.lora_B.weight) == 0                    # B = 0
    bound = 1 / math.sqrt(64)                                              # kaiming-uniform(a=√5) on fan_in 64
    assert layer.lora_A.weight.abs().max() <= bound and layer.lora_A.weight.std() > bound / 3


def test_forward_is_w0x_plus_scaled_bax():
    base = nn.Linear(16, 12)
    layer = LoRALinear(base, r=3, alpha=6)
    randomise(layer)
    x = torch.randn(2, 5, 16)
    A, B = layer.lora_A.weight, layer.lora_B.weight
    expected = x @ base.weight.T + base.bias + (6 / 3) * x @ A.T @ B.T
    assert (layer(x) - expected).abs().max() <= 1e-6
    assert (layer.delta_weight() - 2 * B @ A).abs().max() <= 1e-6 and layer.delta_weight().shape == (12, 16)


def test_rslora_scales_by_root_r():
    assert LoRALinear(nn.Linear(32, 32), r=16, alpha=8).scaling == 8 / 16
    assert LoRALinear(nn.Linear(32, 32), r=16, alpha=8, use_rslora=True).scaling == 8 / 4


def test_conv1d_is_handled_like_a_transposed_linear():
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(12, 16)  # nf=out=12, nx=in=16: weight stored (16, 12)
    layer = LoRALinear(conv, r=2, alpha=4)
    assert (layer.in_features, layer.out_features) == (16, 12)
    randomise(layer)
    x = torch.randn(3, 16)
    expected = x @ conv.weight + conv.bias + x @ layer.delta_weight().T
    assert (layer(x) - expected).abs().max() <= 1e-6


def test_dropout_touches_only_the_lora_branch():
    layer = LoRALinear(nn.Linear(16, 16), r=2, alpha=4, dropout=0.5).train()
    x = torch.randn(4, 16)
    assert torch.equal(layer(x), layer.base_layer(x))  # B = 0: no branch, so dropout cannot show
    randomise(layer)
    assert not torch.equal(layer(x), layer(x))          # two dropout masks
    layer.eval()
    assert torch.equal(layer(x), layer(x))


def test_gradients_reach_only_a_and_b():
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=2))
    randomise(model)
    model(ids()).last_hidden_state.sum().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(".lora_A." in n or ".lora_B." in n for n in grads)


# --------------------------------------------------------------------------------------------- counts
@pytest.mark.parametrize("factory, per_layer", [
    (mp.tiny_encoder, 4 * (32 + 32) + 4 * (32 + 32)),   # query 32->32, value 32->32
    (mp.tiny_decoder, 4 * (32 + 32) + 4 * (32 + 16)),   # q_proj 32->32, v_proj 32->16 (2 KV heads of 8)
    (mp.tiny_gpt2, 4 * (32 + 96)),                      # fused c_attn 32->96
])
def test_closed_form_parameter_count(factory, per_layer):
    model = mp.inject(factory(), mp.LoRAConfig(r=4))
    assert mp.trainable_parameters(model)[0] == 2 * per_layer  # r·(in + out) per matrix, 2 layers


# --------------------------------------------------------------------------------------------- merge
@pytest.mark.parametrize("factory", TINY)
def test_merge_keeps_outputs_and_unmerge_restores_w0(factory):
    model, x = mp.inject(factory(), mp.LoRAConfig(r=4)), ids()
    randomise(model)
    assert_merges(model, x)  # merged and unmerged outputs within 1e-5, W0 back within 1e-6, then mp.merge


# --------------------------------------------------------------------------------------------- peft equality
LAYER_1 = {mp.tiny_encoder: r".*layer\.1\.attention\.self\.(query|key)",  # regex targets, per architecture
           mp.tiny_decoder: r".*layers\.1\.self_attn\.[qkvo]_proj",
           mp.tiny_gpt2: r".*h\.1\.(attn|mlp)\.c_.*"}


@pytest.mark.parametrize("factory", TINY)
@pytest.mark.parametrize("config", [dict(r=4), dict(r=2, alpha=7, use_rslora=True), dict(r=3, dropout=0.1)],
                         ids=["default", "rslora", "regex+dropout"])
def test_matches_peft(factory, config, tmp_path):
    if "dropout" in config:
        config = dict(config, targets=LAYER_1[factory])
    model, x = mp.inject(factory(), mp.LoRAConfig(**config)), ids()
    randomise(model)
    assert_matches_peft(model, factory, tmp_path, input_ids=x)  # within 1e-5


def test_matches_peft_with_a_classifier_head(tmp_path):
    model = mp.inject(classifier(), mp.LoRAConfig(r=4, modules_to_save=["head"]))
    randomise(model)
    x = ids()
    assert_matches_peft(model, classifier, tmp_path, input_ids=x)
    assert (out(classifier(), x) - out(model, x)).abs().max() > 1e-2  # the head really changed and carried over


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, error, phrase", [
    (dict(r=0), ValueError, "positive integer"),
    (dict(r=-2), ValueError, "positive integer"),
    (dict(r=2.5), ValueError, "positive integer"),
    (dict(alpha=0), ValueError, "alpha must be a positive number"),
    (dict(alpha="16"), TypeError, "LoRAConfig.alpha must be a number, got .16."),
    (dict(dropout=1.0), ValueError, r"probability in \[0, 1\)"),
    (dict(dropout=-0.1), ValueError, r"probability in \[0, 1\)"),
    (dict(r=64, targets=["value"]), ValueError, r"r=64 is too large for 'encoder.layer.0.attention.self.value'"),
    (dict(targets=["attention.self"]), TypeError, "Target the linear layers themselves"),
    (dict(targets=["word_embeddings"]), TypeError, "is of type Embedding"),
])
def test_bad_inputs(kwargs, error, phrase):
    model = mp.tiny_encoder()
    with pytest.raises(error, match=phrase):
        mp.inject(model, mp.LoRAConfig(**kwargs))
    assert not mp.peft_layers(model)


# --------------------------------------------------------------------------------------------- real models
@pytest.mark.integration
def test_minilm_count_and_peft_equality(tmp_path):
    model, tok = mp.load_encoder()
    mp.inject(model, mp.LoRAConfig(r=8))
    assert mp.trainable_parameters(model)[0] == 6 * 2 * 8 * (384 + 384)  # 73,728
    randomise(model, std=0.02)
    batch = tok(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    assert_matches_peft(model, lambda: mp.load_encoder()[0], tmp_path, **batch)


@pytest.mark.integration
def test_smollm2_peft_equality(tmp_path):
    model, tok = mp.load_decoder()
    mp.inject(model, mp.LoRAConfig(r=4))
    assert mp.trainable_parameters(model)[0] == 30 * (4 * (576 + 576) + 4 * (576 + 192))  # v_proj: 3 KV heads
    randomise(model, std=0.02)
    batch = tok(["The capital of France is"], return_tensors="pt")
    assert_matches_peft(model, lambda: mp.load_decoder()[0], tmp_path, **batch)  # output [0]: the logits


@pytest.mark.integration
def test_lora_learns():
    """With the classifier head frozen at random, only A and B can lower the loss: LoRA fits 32 reviews."""
    model, tok = minilm_classifier(mp.LoRAConfig(r=8))
    result = learn_rotten_tomatoes(model, tok, train=32, val=None, epochs=8, batch_size=16, lr=1e-2,
                                   max_length=32, warmup_ratio=0)
    assert result.accuracy >= 0.9 and sum(result.losses[-3:]) < 0.5 * sum(result.losses[:3]), result.losses
