"""The classification head the course puts on every encoder: mean pooling over the real tokens, then a Linear.

    model = MeanPoolClassifier(encoder, num_labels=2)     # encoder -> mean over real tokens -> dropout -> Linear
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the hidden states of the real (non-padding) tokens. hidden (B, T', d), mask (B, T) -> (B, d).

    A soft prompt makes the hidden sequence longer than the mask (T' = n + T): its n positions are real,
    so the mask is left-padded with ones.
    """
    extra = hidden.shape[1] - mask.shape[1]
    if extra > 0:
        mask = torch.cat([mask.new_ones(mask.shape[0], extra), mask], dim=1)   # (B, T')
    mask = mask.unsqueeze(-1).to(hidden.dtype)                                   # (B, T', 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)                  # (B, d)


class MeanPoolClassifier(nn.Module):
    """encoder -> mean pooling -> dropout -> Linear. MiniLM's pooler was never trained, so we do not use it."""

    def __init__(self, encoder: nn.Module, num_labels: int = 2, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # lets minipeft find model_type / defaults through the wrapper
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, **kwargs)
        pooled = mean_pool(out.last_hidden_state, attention_mask)              # (B, d)
        logits = self.head(self.dropout(pooled))                                # (B, num_labels)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
