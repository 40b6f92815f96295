r"""Preference tuning with an adapter (chapter 11): DPO, whose reference model is the same network, adapter off.

DPO (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model", eq. 7)
trains a policy π_θ on pairs (prompt x, preferred response y_w, dispreferred y_l) against a frozen reference π_ref:

    L = − log σ( β · [ (log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x)) ] )

β · (log π_θ(y|x) − log π_ref(y|x)) is the "implicit reward" of a response; the bracket is the reward margin between
the pair. Full fine-tuning needs a second, frozen copy of the model as π_ref. With PEFT the reference is the SAME
network with the adapter switched off (`minipeft.disabled`): no second copy in memory. At the start (adapter = identity,
LoRA's B = 0) π_θ = π_ref, every margin is 0 and L = log 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.inject import disabled
from .fewshot import Choices, pairs_from_ids, token_log_probs


def response_log_probs(model: nn.Module, batch: Choices) -> torch.Tensor:
    """log π(response | prompt) of every row (the sum over its response tokens), (B,)."""
    return token_log_probs(model, batch).sum((1, 2))


def dpo_loss(model: nn.Module, prompts: list[list[int]], chosen: list[list[int]], rejected: list[list[int]],
             beta: float = 0.1, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(DPO loss, mean reward margin) for token-id prompts and their preferred / dispreferred responses. The policy
    is `model` as it is; the reference is `model` inside `minipeft.disabled` (its base model), without gradients."""
    if not beta > 0:
        raise ValueError(f"beta must be a positive number (DPO's usual 0.1-0.5), got {beta!r}.")
    w, lose = pairs_from_ids(prompts, chosen, pad_id), pairs_from_ids(prompts, rejected, pad_id)
    policy_w, policy_l = response_log_probs(model, w), response_log_probs(model, lose)
    with torch.no_grad(), disabled(model):
        ref_w, ref_l = response_log_probs(model, w), response_log_probs(model, lose)
    margin = beta * ((policy_w - ref_w) - (policy_l - ref_l))                  # (B,)
    return -F.logsigmoid(margin).mean(), margin.detach().mean()
