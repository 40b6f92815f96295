"""DoRA (methods/dora.py): magnitude ⊙ direction, the direction adapted by LoRA; equal to peft's use_dora=True."""

import pytest
import torch

import minipeft as mp
from helpers import MODELS, assert_matches_peft, ids, out, peft_from, randomise


def _query(model):
    return mp.peft_layers(model)["encoder.layer.0.attention.self.query"]


def test_at_init_m_is_the_length_of_each_row_of_w0_and_the_model_is_the_base_model():
    model, x = mp.inject(mp.tiny_encoder(), mp.DoRAConfig(r=4)), ids()
    layer = _query(model)
    assert torch.allclose(layer.magnitude, layer.base_layer.weight.norm(dim=1))      # (out,): ‖W0‖_c
    assert torch.equal(out(model, x), out(mp.tiny_encoder(), x))
    assert layer.magnitude.numel() == layer.out_features                              # one number per output
    lora = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=4))
    assert mp.trainable_parameters(model)[0] == mp.trainable_parameters(lora)[0] + 2 * 2 * 32  # + m, 4 matrices


def test_the_merged_weight_has_rows_of_length_m_and_the_direction_of_w0_plus_lora():
    """Eq. 5: W' = m ⊙ (W0 + s·B A) / ‖W0 + s·B A‖_c, so ‖W'‖_c = m whatever B A is."""
    model = mp.inject(mp.tiny_encoder(), mp.DoRAConfig(r=4, alpha=8))
    randomise(model, ones=("magnitude",))
    layer = _query(model)
    w0, lora = layer.base_layer.weight.detach().clone(), layer.lora_weight().detach()
    layer.merge()
    merged = layer.base_layer.weight
    assert torch.allclose(merged.norm(dim=1), layer.magnitude.detach(), atol=1e-6)
    direction = (w0 + lora) / (w0 + lora).norm(dim=1, keepdim=True)
    assert torch.allclose(merged / merged.norm(dim=1, keepdim=True), direction, atol=1e-6)
    layer.unmerge()
    assert (layer.base_layer.weight - w0).abs().max() < 1e-6


def test_the_norm_is_a_constant_in_the_backward_pass_and_every_part_learns():
    """§4.3: ‖W0 + s·B A‖_c is detached; m, A and B all get gradients (B from the start, A once B is not 0)."""
    model = mp.inject(mp.tiny_encoder(), mp.DoRAConfig(r=4))
    randomise(model, ones=("magnitude",))
    out_sum = model(input_ids=ids())[0].sum()
    out_sum.backward()
    layer = _query(model)
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in (layer.magnitude, layer.lora_A.weight, layer.lora_B.weight))
    # the gradient of m alone: with the norm a constant, y is linear in m, so d(sum y)/dm = (sum over rows of the
    # layer's output direction), which a finite difference in m reproduces exactly
    x = torch.randn(3, 5, layer.in_features)
    m = layer.magnitude.detach().clone().requires_grad_(True)
    norm = layer.row_norm(layer.lora_weight().detach()).detach()
    direction = x @ (layer.w0() + layer.lora_weight()).detach().T / norm               # (3, 5, out)
    assert torch.allclose(torch.autograd.grad((m * direction).sum(), m)[0], direction.sum((0, 1)))


@pytest.mark.parametrize("arch", ["bert", "llama", "gpt2"])
def test_dropout_in_training_is_applied_as_peft_applies_it(arch, tmp_path):
    model = mp.inject(MODELS[arch](), mp.DoRAConfig(r=4, dropout=0.3))
    randomise(model, ones=("magnitude",))
    theirs = peft_from(model, MODELS[arch], tmp_path)
    model.train(), theirs.train()
    x = ids()
    torch.manual_seed(1)
    ours = model(input_ids=x)[0]
    torch.manual_seed(1)
    assert (theirs(input_ids=x)[0] - ours).abs().max() < 1e-5


def test_merge_equals_peft_merge_and_unload(tmp_path):
    model = mp.inject(mp.tiny_decoder(), mp.DoRAConfig(r=4, use_rslora=True))
    randomise(model, ones=("magnitude",))
    theirs = peft_from(model, mp.tiny_decoder, tmp_path).merge_and_unload()
    mp.merge(model)
    for (name, a), (_, b) in zip(model.state_dict().items(), theirs.state_dict().items()):
        assert (a - b).abs().max() < 1e-6, name


@pytest.mark.integration
def test_dora_on_minilm_equals_peft_and_merges(tmp_path):
    model, tok = mp.load_encoder()
    mp.inject(model, mp.DoRAConfig(r=8, targets=["query", "value", "dense"]))
    randomise(model, std=0.02, ones=("magnitude",))
    for layer in mp.peft_layers(model).values():        # m near ‖W0‖_c: rows 2 % longer or shorter
        layer.magnitude.data *= layer.base_layer.weight.norm(dim=1)
    batch = tok(["a gripping, funny film", "dull and far too long"], padding=True, return_tensors="pt")
    assert_matches_peft(model, lambda: mp.load_encoder()[0], tmp_path, **batch)
    with torch.no_grad():
        before = model(**batch)[0]
        mp.merge(model)
        assert (model(**batch)[0] - before).abs().max() < 1e-5
