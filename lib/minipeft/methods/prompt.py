"""Prompt tuning: Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning" (§2).

n trainable vectors P (n, d) are prepended to the INPUT word embeddings; the whole model stays frozen:

    input_ids (B, T) ─▶ word embeddings ─▶ X (B, T, d)
                                             │
    P (n, d) ─▶ expand ─▶ (B, n, d) ─────▶ [P ; X] (B, n+T, d) ─▶ (+ position, token-type emb.) ─▶ frozen model
    attention_mask   [1]*n ++ mask        token_type_ids   [0]*n ++ ids        labels (causal LM)   [-100]*n ++ labels

As in Hugging Face peft, P joins BEFORE position embeddings are added: BERT adds position embeddings 0..n-1 to the
prompt and n..n+T-1 to the text; Llama's rotary positions likewise count the prompt. Consequence: every hidden state
comes out n positions LONGER (B, n+T, d). A pooling head must account for it (minipeft.train.mean_pool left-pads its
mask with n ones); a causal LM's logits have n extra leading positions (their labels are -100).

Mechanism: the soft-prompt hook (softprompt.py), shared with P-tuning and the multitask prompt.

Initialisations (Lester §2.1 / peft ``prompt_tuning_init``):
    random  P ~ N(0, 1) (peft RANDOM: nn.Embedding's default; Lester: uniform in [-0.5, 0.5]), far from the
            embedding manifold
    vocab   rows of the word-embedding matrix at n token ids drawn uniformly (peft SAMPLE_VOCAB; Lester samples the
            5,000 most common tokens)
    text    the embeddings of tokenizer(init_text)["input_ids"] (special tokens included, as peft does), repeated to
            fill n; a text longer than n tokens is an error here (peft silently truncates it)
    labels  (not in peft) the embedding of each class-label word, averaged over its sub-tokens, cycled to fill n
            (Lester fills the positions left over with sampled vocabulary instead)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.checks import check_choice, check_int
from ..core.config import PeftConfig
from ..core.layers import PeftModule
from .softprompt import check_no_targets, install_prompt, peft_prompt_config, prompt_embeddings, start_without_tokenizer

INITS = ("random", "vocab", "text", "labels")
PEFT_INIT = {"random": "RANDOM", "vocab": "SAMPLE_VOCAB", "text": "TEXT", "labels": "RANDOM"}  # peft has no labels init


# --------------------------------------------------------------------------------------------- the prompt
class SoftPrompt(PeftModule):
    """The n trainable vectors P (n, d). Same parameter name as peft's PromptEmbedding: ``embedding.weight``."""


    def __init__(self, n: int, d: int):
        super().__init__()
        self.embedding = nn.Embedding(n, d)  # default init N(0, 1) = peft's RANDOM

    def forward(self) -> torch.Tensor:
        return self.embedding.weight  # (n, d)


# --------------------------------------------------------------------------------------------- the config
@dataclass
class PromptConfig(PeftConfig):
    length: int = 20               # n; Lester Fig. 3a: gains flatten beyond ~20 tokens
    init: str = "random"           # random | vocab | text | labels; Lester Fig. 3b: labels > vocab > random when small
    init_text: str | None = None   # init="text": e.g. "Classify the sentiment of this movie review"
    label_words: list[str] | None = None  # init="labels": e.g. ["negative", "positive"]
    tokenizer: Any = None          # a tokenizer object, or a name/path for AutoTokenizer; needed for text and labels

    method: ClassVar[str] = "prompt"
    uses_targets: ClassVar[bool] = False  # the prompt is an input: no module is wrapped

    def validate(self) -> None:
        check_no_targets(self)
        check_int(self.length, "length", "20", meaning="n prompt vectors")
        check_choice(self.init, INITS, "prompt init")
        if self.init == "text" and (not isinstance(self.init_text, str) or not self.init_text.strip()):
            raise ValueError("init='text' needs init_text='...' (e.g. 'Classify the sentiment of this review').")
        if self.init != "text" and self.init_text is not None:
            raise ValueError(f"init_text is only used with init='text' (init is {self.init!r}): set init='text' "
                             "or drop init_text.")
        if self.init == "labels":
            words = self.label_words
            if not isinstance(words, (list, tuple)) or not words or not all(isinstance(w, str) and w.strip()
                                                                            for w in words):
                raise ValueError("init='labels' needs label_words=[...], one non-empty string per class, "
                                 "e.g. ['negative', 'positive'].")
            if len(words) > self.length:
                raise ValueError(f"{len(words)} label words do not fit in a prompt of length {self.length}: "
                                 "raise length or use fewer words.")
        elif self.label_words is not None:
            raise ValueError(f"label_words is only used with init='labels' (init is {self.init!r}).")
        if self.init in ("text", "labels") and self.tokenizer is None:
            raise ValueError(f"init={self.init!r} needs the backbone's tokenizer: pass tokenizer=tok "
                             "(the object, or its name/path).")
        if self.tokenizer is not None and not (isinstance(self.tokenizer, str) or callable(self.tokenizer)):
            raise TypeError("tokenizer must be a tokenizer object or a name/path, "
                            f"not {type(self.tokenizer).__name__}.")

    # -- the initial prompt
    def _get_tokenizer(self):
        if isinstance(self.tokenizer, str):
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(self.tokenizer)
        return self.tokenizer

    def _token_ids(self, tokenizer, text: str, special: bool, vocab_size: int) -> list[int]:
        ids = tokenizer(text, add_special_tokens=special)["input_ids"]
        if any(i >= vocab_size for i in ids):
            raise ValueError(f"The tokenizer gives ids >= the model's vocabulary size {vocab_size} for {text!r}: "
                             "it does not belong to this model. Pass the backbone's own tokenizer.")
        return ids

    def initial_prompt(self, word_embeddings: nn.Embedding) -> torch.Tensor | None:
        """P at step 0 as an (n, d) tensor, or None for random (keep nn.Embedding's N(0, 1))."""
        n, E = self.length, word_embeddings.weight.detach()  # E (V, d)
        V = E.shape[0]
        if self.init == "random":
            return None
        if self.init == "vocab":
            return E[torch.randint(0, V, (n,), dtype=torch.long).to(E.device)].clone()  # (n, d)
        tokenizer = self._get_tokenizer()
        if self.init == "text":
            ids = self._token_ids(tokenizer, self.init_text, True, V)  # with special tokens, as peft
            if len(ids) > n:
                raise ValueError(f"init_text is {len(ids)} tokens long but the prompt has only length={n} positions: "
                                 f"shorten the text or raise length (peft would silently keep the first {n} tokens).")
            ids = (ids * math.ceil(n / len(ids)))[:n]  # repeat to fill n (peft's rule)
            return E[torch.tensor(ids, device=E.device)].clone()  # (n, d)
        rows = []
        unk = getattr(tokenizer, "unk_token_id", None)
        for word in self.label_words:
            ids = self._token_ids(tokenizer, word, False, V)
            if not ids or (unk is not None and unk in ids):
                raise ValueError(f"Label word {word!r} is not in the tokenizer's vocabulary (it maps to "
                                 f"{tokenizer.convert_ids_to_tokens(ids)}): choose another word.")
            rows.append(E[torch.tensor(ids, device=E.device)].mean(0))  # (d,) average over sub-tokens
        return torch.stack([rows[i % len(rows)] for i in range(n)])  # (n, d), labels cycled

    def for_loading(self) -> "PeftConfig":
        return start_without_tokenizer(self)

    def attach(self, model: nn.Module) -> None:
        install_prompt(model, self.build)

    def build(self, embeddings: nn.Embedding) -> "SoftPrompt":
        prompt = SoftPrompt(self.length, embeddings.embedding_dim).to(embeddings.weight.device)
        rows = self.initial_prompt(embeddings)
        if rows is not None:
            prompt.embedding.weight.data.copy_(rows.float())
        return prompt

    # -- export
    def to_peft(self, model: nn.Module):
        extra = {"prompt_tuning_init": PEFT_INIT[self.init]}
        if self.init == "text":
            name = self.tokenizer if isinstance(self.tokenizer, str) else getattr(self.tokenizer, "name_or_path", "")
            if name:  # peft requires a tokenizer name with TEXT; without one, export as RANDOM (weights are loaded)
                extra.update(prompt_tuning_init_text=self.init_text, tokenizer_name_or_path=name)
            else:
                extra["prompt_tuning_init"] = "RANDOM"
        state = {"prompt_embeddings": prompt_embeddings(model)}  # (n, d), peft's key
        return peft_prompt_config(model, self, "PROMPT_TUNING", **extra), state


