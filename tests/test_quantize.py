"""quantize.py: an int8 frozen base under LoRA (QLoRA's idea), with torch's per-channel rounding."""

import pytest
import torch
from torch import nn

import minipeft as mp
from helpers import ids, out, randomise


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # deprecated in torch 2.13, still equal
def test_int8_rounding_is_torch_s_per_channel_quantisation():
    torch.manual_seed(0)
    linear = nn.Linear(48, 16)
    q = mp.Int8Linear(linear)
    theirs = torch.quantize_per_channel(linear.weight.detach(), q.scale.double(), torch.zeros(16, dtype=torch.long),
                                        axis=0, dtype=torch.qint8)
    assert torch.equal(q.qweight, theirs.int_repr())
    assert torch.equal(q.weight, theirs.dequantize())
    err = (q.weight - linear.weight).abs()                      # at most half a step of each row
    assert (err <= q.scale[:, None] / 2 + 1e-7).all() and err.max() > 0
    x = torch.randn(3, 48)
    assert torch.allclose(q(x), x @ q.weight.T + linear.bias)


def test_lora_on_an_int8_base_trains_and_a_merge_asks_to_dequantize_first():
    model = mp.quantize_frozen(mp.tiny_decoder())              # QLoRA's order: quantise, then inject
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Int8Linear" in kinds and type(model.lm_head) is nn.Linear   # lm_head (tied) stays float
    base = mp.tiny_decoder()
    linears = [m for name, m in base.named_modules() if type(m) is nn.Linear and name != "lm_head"]
    int8 = sum(m.weight.numel() + 4 * m.out_features for m in linears)   # int8 + a float32 scale per row
    assert mp.model_bytes(model) == mp.model_bytes(base) - sum(4 * m.weight.numel() for m in linears) + int8
    mp.inject(model, mp.LoRAConfig(r=4))
    assert not any(b.requires_grad for b in model.buffers())
    x, labels = ids(4, 6), ids(4, 6)
    losses = []
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(8):
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    expected = out(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match="dequantize"):
        mp.merge(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())   # nothing changed
    mp.merge(mp.dequantize(model))
    assert (out(model, x) - expected).abs().max() < 1e-5         # the rounded W0, now in float, + ΔW


def test_quantising_after_inject_keeps_peft_factors_float_and_refuses_a_trained_module():
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=4))
    randomise(model)
    mp.quantize_frozen(model)
    layer = mp.peft_layers(model)["encoder.layer.0.attention.self.query"]
    assert isinstance(layer.base_layer, mp.Int8Linear) and type(layer.lora_A) is nn.Linear
    with pytest.raises(TypeError, match="dequantize"):
        layer.merge()
    classifier = mp.inject(mp.lab.train.MeanPoolClassifier(mp.tiny_encoder()),
                           mp.LoRAConfig(r=4, modules_to_save=["head"]))
    with pytest.raises(ValueError, match="keep="):
        mp.quantize_frozen(classifier, keep=())
    with pytest.raises(ValueError, match="No nn.Linear"):
        mp.quantize_frozen(mp.quantize_frozen(mp.tiny_encoder()))
