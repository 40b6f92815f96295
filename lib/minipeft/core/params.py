"""The one parameter counter every chapter uses."""

from __future__ import annotations

from torch import nn


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts. Tied weights (e.g. SmolLM2's embeddings) are counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():  # .parameters() already de-duplicates shared tensors
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def summary(model: nn.Module) -> str:
    """'trainable params: 73,728 || all params: 22,786,432 || trainable%: 0.3236' (peft's format)."""
    trainable, total = trainable_parameters(model)
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / max(total, 1):.4f}"


def print_trainable_parameters(model: nn.Module) -> None:
    print(summary(model))
