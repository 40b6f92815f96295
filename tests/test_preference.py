"""lab/preference.py: DPO with a LoRA adapter, the reference being the same network with the adapter off."""

import math

import pytest
import torch

import minipeft as mp
from minipeft.lab import fewshot, preference

PROMPTS = [[5, 9, 14, 3], [7, 7], [20, 21, 22, 23]]
CHOSEN = [[40, 41], [40], [40, 41, 42]]          # the preferred responses share tokens 40-42 ...
REJECTED = [[60], [60, 61], [60, 62]]            # ... the dispreferred ones 60-62


def test_at_the_start_the_policy_is_the_reference_and_the_loss_is_log_2():
    model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4))
    loss, margin = preference.dpo_loss(model, PROMPTS, CHOSEN, REJECTED)
    assert margin.item() == 0.0 and loss.item() == pytest.approx(math.log(2), abs=1e-7)


def test_the_reference_is_the_base_model_and_dpo_moves_the_policy_towards_the_chosen():
    model = mp.inject(mp.tiny_decoder(), mp.LoRAConfig(r=4, targets=["q_proj", "v_proj", "down_proj"]))
    batch = fewshot.pairs_from_ids(PROMPTS, CHOSEN)
    with torch.no_grad():
        base = preference.response_log_probs(mp.tiny_decoder(), batch)    # a separate copy of the base model
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(30):
        loss, margin = preference.dpo_loss(model, PROMPTS, CHOSEN, REJECTED, beta=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad(), mp.disabled(model):
        assert torch.equal(preference.response_log_probs(model, batch), base)   # adapter off = the base model
        ref_rejected = preference.response_log_probs(model, fewshot.pairs_from_ids(PROMPTS, REJECTED))
    with torch.no_grad():
        policy = preference.response_log_probs(model, batch)
        policy_rejected = preference.response_log_probs(model, fewshot.pairs_from_ids(PROMPTS, REJECTED))
    assert loss.item() < 0.6 * math.log(2) and margin.item() > 0.5             # the margin grows from 0
    assert ((policy - base) > (policy_rejected - ref_rejected)).all()       # every pair's implicit reward ordered
    with pytest.raises(ValueError, match="beta"):
        preference.dpo_loss(model, PROMPTS, CHOSEN, REJECTED, beta=0)
    with pytest.raises(ValueError, match="one answer per prompt"):
        fewshot.pairs_from_ids(PROMPTS, CHOSEN[:2])
