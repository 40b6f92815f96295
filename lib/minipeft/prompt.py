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

Mechanism: a forward pre-hook on the transformers model (also when it sits inside a wrapper such as a classifier)
rewrites the call: input_ids -> inputs_embeds = [P ; X], and extends the mask, token types, labels and position ids.
During ``generate()`` the prompt enters once, at the prefill step; later steps only see the KV cache, which holds it,
so the hook just extends the attention mask (and shifts explicit position ids) by n. The trainable module is stored
on the transformers model as ``prompt_encoder`` (peft's name); P-tuning (ptuning.py) plugs a different encoder into
the same hook.

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

import inspect
import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .inject import PeftConfig, PeftModule

INITS = ("random", "vocab", "text", "labels")
PEFT_INIT = {"random": "RANDOM", "vocab": "SAMPLE_VOCAB", "text": "TEXT", "labels": "RANDOM"}  # peft has no labels init


# --------------------------------------------------------------------------------------------- the prompt
class SoftPrompt(PeftModule):
    """The n trainable vectors P (n, d). Same parameter name as peft's PromptEmbedding: ``embedding.weight``."""

    mergeable: ClassVar[bool] = False  # nothing to fold into a weight: the prompt stays an input

    def __init__(self, n: int, d: int):
        super().__init__()
        self.embedding = nn.Embedding(n, d)  # default init N(0, 1) = peft's RANDOM

    def forward(self) -> torch.Tensor:
        return self.embedding.weight  # (n, d)


def find_backbone(model: nn.Module) -> nn.Module:
    """The outermost transformers model inside ``model`` (the model itself, or e.g. a classifier's encoder)."""
    from transformers import PreTrainedModel

    for module in model.modules():  # pre-order: the outermost comes first
        if isinstance(module, PreTrainedModel):
            return module
    raise TypeError(f"Soft prompts need a Hugging Face transformers model inside the {type(model).__name__}: "
                    "none was found.")


def prompt_embeddings(model: nn.Module) -> torch.Tensor:
    """The prompt the model currently prepends, P (n, d), detached (after P-tuning's encoder, if any)."""
    backbone = find_backbone(model)
    if not hasattr(backbone, "prompt_encoder"):
        raise ValueError("This model has no soft prompt: inject(model, PromptConfig(...)) first.")
    with torch.no_grad():
        return backbone.prompt_encoder().detach()  # (n, d)


def attach_prompt(model: nn.Module, encoder: nn.Module) -> None:
    """Make the transformers model inside ``model`` prepend ``encoder()`` (n, d) to its input embeddings."""
    backbone = find_backbone(model)
    backbone.prompt_encoder = encoder  # a sub-module: moves with .to(), shows in state_dict(), trained by inject
    if getattr(backbone, "_minipeft_prompt_hook", None) is None:
        backbone._minipeft_prompt_hook = backbone.register_forward_pre_hook(_prepend_prompt, with_kwargs=True)


def _pad_left(x: torch.Tensor, n: int, value) -> torch.Tensor:
    return torch.cat([x.new_full((x.shape[0], n), value), x], dim=1)  # (B, T) -> (B, n+T)


def _shift_positions(pos: torch.Tensor, n: int, prefill: bool) -> torch.Tensor:
    if not prefill:
        return pos + n  # (B, 1) while decoding: the prompt occupies positions 0..n-1
    prompt_pos = torch.arange(n, device=pos.device, dtype=pos.dtype).expand(pos.shape[0], n)
    return torch.cat([prompt_pos, pos + n], dim=1)  # (B, n+T)


def _prepend_prompt(backbone: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: rewrite the call so the model sees [P ; X] (see the module docstring)."""
    names = list(inspect.signature(backbone.forward).parameters)
    kwargs = {**dict(zip(names, args)), **kwargs}  # positional arguments -> keywords
    encoder = backbone.prompt_encoder
    n = encoder.embedding.num_embeddings  # SoftPrompt and P-tuning's PromptEncoder both hold n rows
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    prefill = cache is None or cache.get_seq_length() == 0  # later generate() steps: P already sits in the KV cache

    if (mask := kwargs.get("attention_mask")) is not None:
        if mask.dim() != 2:
            raise TypeError(f"Soft prompts need a 2-D attention mask (B, T), got a {mask.dim()}-D one "
                            "(a static/compiled cache?). Use the default dynamic cache.")
        kwargs["attention_mask"] = _pad_left(mask, n, 1)  # (B, n+T): the prompt is always attended to
    if kwargs.get("position_ids") is not None:
        kwargs["position_ids"] = _shift_positions(kwargs["position_ids"], n, prefill)
    if not prefill:
        return (), kwargs

    P = encoder()  # (n, d)
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        embeds = backbone.get_input_embeddings()(kwargs["input_ids"])  # (B, T, d)
    B = embeds.shape[0]
    kwargs["inputs_embeds"] = torch.cat([P.to(embeds.dtype).expand(B, n, -1), embeds], dim=1)  # (B, n+T, d)
    kwargs["input_ids"] = None
    if kwargs.get("token_type_ids") is not None:
        kwargs["token_type_ids"] = _pad_left(kwargs["token_type_ids"], n, 0)  # (B, n+T): segment A
    if kwargs.get("labels") is not None:
        kwargs["labels"] = _pad_left(kwargs["labels"], n, -100)  # (B, n+T): no loss on prompt positions
    return (), kwargs


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
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length <= 0:
            raise ValueError(f"length must be a positive int (n prompt vectors, e.g. 20), got {self.length!r}.")
        if self.init not in INITS:
            raise ValueError(f"Unknown prompt init {self.init!r}: use one of {list(INITS)}.")
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

    def attach(self, model: nn.Module) -> None:
        backbone = find_backbone(model)
        check_prompt_target(backbone)
        embeddings = backbone.get_input_embeddings()
        prompt = SoftPrompt(self.length, embeddings.embedding_dim).to(embeddings.weight.device)
        rows = self.initial_prompt(embeddings)  # may raise: nothing edited yet
        if rows is not None:
            prompt.embedding.weight.data.copy_(rows.float())
        attach_prompt(backbone, prompt)

    # -- save / export
    def to_dict(self) -> dict:
        """JSON-safe: a tokenizer object is stored as its name/path."""
        tok = self.tokenizer
        data = PeftConfig.to_dict(replace(self, tokenizer=None))
        data["tokenizer"] = tok if tok is None or isinstance(tok, str) else getattr(tok, "name_or_path", None)
        return data

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


def check_prompt_target(backbone: nn.Module) -> None:
    """Raise before anything is edited if this transformers model cannot take a soft prompt (again)."""
    if hasattr(backbone, "prompt_encoder"):
        raise ValueError("This model already has a soft prompt (prompt tuning or P-tuning): start from a fresh model.")
    if getattr(backbone.config, "is_encoder_decoder", False):
        raise TypeError("Soft prompts are implemented for encoder-only and decoder-only models, not encoder-decoders.")


def peft_prompt_config(model: nn.Module, config: PeftConfig, peft_type: str, **extra) -> dict:
    """adapter_config.json for a peft prompt-learning method (PROMPT_TUNING, P_TUNING) on this backbone.
    (minipeft.export_peft adds modules_to_save and base_model_name_or_path.)"""
    backbone = find_backbone(model)
    cfg = backbone.config
    name = type(backbone).__name__
    task = ("CAUSAL_LM" if backbone.can_generate() else "SEQ_CLS" if name.endswith("ForSequenceClassification")
            else "TOKEN_CLS" if name.endswith("ForTokenClassification") else "FEATURE_EXTRACTION")
    return {"peft_type": peft_type, "task_type": task, "num_virtual_tokens": config.length,
            "token_dim": cfg.hidden_size, "num_transformer_submodules": 1,
            "num_attention_heads": cfg.num_attention_heads, "num_layers": cfg.num_hidden_layers,
            "inference_mode": True, **extra}


# --------------------------------------------------------------------------------------------- reading a prompt
def nearest_tokens(model: nn.Module, tokenizer, k: int = 5, with_scores: bool = False) -> list[list]:
    """For each prompt position, the k vocabulary tokens whose embeddings are closest by cosine similarity
    (Lester §7 reads learned prompts this way). Returns n lists of k tokens (or (token, cosine) pairs)."""
    backbone = find_backbone(model)
    P = prompt_embeddings(model)  # (n, d)
    E = backbone.get_input_embeddings().weight.detach()  # (V, d)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= E.shape[0]:
        raise ValueError(f"k must be an int between 1 and the vocabulary size {E.shape[0]}, got {k!r}.")
    cosine = F.normalize(P.float(), dim=-1) @ F.normalize(E.float(), dim=-1).T  # (n, V)
    scores, ids = cosine.topk(k, dim=-1)  # (n, k)
    rows = [tokenizer.convert_ids_to_tokens(row.tolist()) for row in ids]
    if with_scores:
        return [list(zip(tokens, s.tolist())) for tokens, s in zip(rows, scores)]
    return rows
