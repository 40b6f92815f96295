"""P-tuning: Liu et al. 2021, "GPT Understands, Too" (§3): the soft prompt comes out of a small prompt encoder.

Prompt tuning trains P (n, d) directly. P-tuning trains n input vectors E AND a network that maps them to P. Liu §3.2:
trained independently, prompt vectors get stuck in local minima of the "discrete" embedding space, and they should
depend on each other ("association"); an encoder shared by all positions couples them:

    E (n, d) ──▶ encoder ──▶ P (n, d) ──▶ prepended to the word embeddings, exactly as in prompt tuning (prompt.py)

    encoder="lstm" (Liu §3.2)  bi-LSTM (d -> 2h, lstm_layers deep) ─▶ Linear(2h, 2h) ─▶ ReLU ─▶ Linear(2h, d)
    encoder="mlp"  (peft's default)  Linear(d, h) ─▶ ReLU ─▶ Linear(h, h) ─▶ ReLU ─▶ Linear(h, d)

The architecture and parameter names are those of Hugging Face peft's PromptEncoder (P_TUNING), so ``to_peft`` exports
exactly what peft saves: the encoder's OUTPUT P, an (n, d) table. Like peft we prepend P to the input; the paper also
places prompt tokens between pieces of a template with "anchor" tokens, which a pure prefix does not do.

The encoder is only a training-time reparameterisation: after training, ``fold_prompt_encoder(model)`` replaces it by
the plain soft prompt P it produces (same outputs, n·d parameters, no encoder to run per forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..core.checks import check_choice, check_int, check_probability
from ..core.config import PeftConfig
from ..core.inject import mark_trainable
from ..core.layers import PeftModule
from ..core.targets import find_backbone
from .prompt import PromptConfig, SoftPrompt
from .softprompt import check_no_targets, install_prompt, peft_prompt_config, prompt_embeddings

ENCODERS = ("mlp", "lstm")


class PromptEncoder(PeftModule):
    """E (n, d) -> P (n, d). Parameter names match peft's: embedding, mlp_head, lstm_head."""


    def __init__(self, n: int, d: int, encoder: str, hidden: int, lstm_layers: int, dropout: float):
        super().__init__()
        self.kind = encoder
        self.embedding = nn.Embedding(n, d)  # E, N(0, 1) as in peft
        if encoder == "lstm":
            self.lstm_head = nn.LSTM(input_size=d, hidden_size=hidden, num_layers=lstm_layers, dropout=dropout,
                                     bidirectional=True, batch_first=True)
            self.mlp_head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, d))
        else:
            self.mlp_head = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                          nn.Linear(hidden, d))

    def forward(self) -> torch.Tensor:
        E = self.embedding.weight.unsqueeze(0)          # (1, n, d): one sequence of n prompt positions
        if self.kind == "lstm":
            E = self.lstm_head(E)[0]                    # (1, n, 2h): each position sees all others, both directions
        return self.mlp_head(E)[0]                      # (n, d)


@dataclass
class PTuningConfig(PeftConfig):
    length: int = 20          # n virtual tokens, as in prompt tuning
    encoder: str = "mlp"      # mlp (peft's default, simpler, trains as well) | lstm (the paper's bi-LSTM + MLP)
    hidden: int | None = None  # h; None -> d, peft's default (encoder_hidden_size = token_dim)
    lstm_layers: int = 2      # bi-LSTM depth (peft's encoder_num_layers; ignored by the MLP)
    dropout: float = 0.0      # between LSTM layers (peft's encoder_dropout)

    method: ClassVar[str] = "ptuning"
    uses_targets: ClassVar[bool] = False

    def validate(self) -> None:
        check_no_targets(self)
        check_int(self.length, "length", "20", meaning="n virtual tokens")
        check_choice(self.encoder, ENCODERS, "prompt encoder")
        if self.hidden is not None:
            check_int(self.hidden, "hidden", "128", meaning="the encoder's width h, or None for d")
        check_int(self.lstm_layers, "lstm_layers", "2")
        check_probability(self.dropout, "dropout")

    def attach(self, model: nn.Module) -> None:
        install_prompt(model, lambda embeddings: PromptEncoder(
            self.length, embeddings.embedding_dim, self.encoder, self.hidden or embeddings.embedding_dim,
            self.lstm_layers, self.dropout))

    def to_peft(self, model: nn.Module):
        backbone = find_backbone(model)
        extra = dict(encoder_reparameterization_type=self.encoder.upper(),
                     encoder_hidden_size=self.hidden or backbone.get_input_embeddings().embedding_dim,
                     encoder_num_layers=self.lstm_layers, encoder_dropout=self.dropout)
        # peft saves the encoder's output P (get_prompt_embedding_to_save), not the encoder
        return peft_prompt_config(model, self, "P_TUNING", **extra), {"prompt_embeddings": prompt_embeddings(model)}


def fold_prompt_encoder(model: nn.Module) -> nn.Module:
    """Replace the P-tuning encoder by the soft prompt P it produces: same outputs, n·d parameters.
    The model then holds plain prompt tuning (its saved config becomes a PromptConfig of the same length)."""
    backbone = find_backbone(model)
    if not isinstance(getattr(backbone, "prompt_encoder", None), PromptEncoder):
        raise ValueError("This model has no P-tuning prompt encoder to fold: inject(model, PTuningConfig(...)) first.")
    P = prompt_embeddings(model)  # (n, d)
    prompt = SoftPrompt(*P.shape).to(P.device)
    prompt.embedding.weight.data.copy_(P)
    backbone.prompt_encoder = prompt
    configs = getattr(model, "minipeft_configs", [])
    model.minipeft_configs = [PromptConfig(length=c.length, modules_to_save=list(c.modules_to_save))
                              if isinstance(c, PTuningConfig) else c for c in configs]
    mark_trainable(model)
    return model
