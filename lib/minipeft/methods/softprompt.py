"""The soft-prompt hook that prompt tuning (prompt.py), P-tuning (ptuning.py) and the multitask prompt (mpt.py) share.

A prompt encoder is any module whose ``forward()`` returns P (n, d) and that holds ``embedding`` (n rows): SoftPrompt
returns its table, P-tuning's PromptEncoder maps its table through a network, MPT modulates a shared one per task.

Mechanism: a forward pre-hook on the transformers model (also when it sits inside a wrapper such as a classifier)
rewrites the call: input_ids -> inputs_embeds = [P ; X], and extends the mask, token types, labels and position ids.
During ``generate()`` the prompt enters once, at the prefill step; later steps only see the KV cache, which holds it,
so the hook just extends the attention mask (and shifts explicit position ids) by n. An encoder-decoder (T5, BART)
takes the prompt in front of its ENCODER's input, as peft does (see prepend_to_encoder). The trainable module is stored
on the transformers model as ``prompt_encoder`` (peft's name); P-tuning (ptuning.py) plugs a different encoder into
the same hook.

"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import PeftConfig
from ..core.targets import find_backbone


# --------------------------------------------------------------------------------------------- installing a prompt
def check_no_targets(config: PeftConfig) -> None:
    """A soft prompt is an input, not a wrapped module: ``targets`` would be silently ignored, so refuse it."""
    if config.targets is not None:
        raise ValueError(f"{type(config).__name__} prepends vectors to the input and wraps no module, so it takes no "
                         f"targets (got targets={config.targets!r}); leave targets=None.")


def install_prompt(model: nn.Module, build: Callable[[nn.Embedding], nn.Module]) -> None:
    """``build(word_embeddings)`` -> the prompt encoder; checked and built before the model is edited."""
    backbone = find_backbone(model)
    check_prompt_target(backbone)
    embeddings = backbone.get_input_embeddings()
    encoder = build(embeddings)  # may raise: nothing edited yet
    check_prompt_fits(backbone, encoder.embedding.num_embeddings)
    attach_prompt(backbone, encoder.to(embeddings.weight.device))


def start_without_tokenizer(config):
    """``config`` as load_adapter injects it (PeftConfig.for_loading): a text or label start needs the tokenizer, but
    every weight is in the saved file and overwrites the start anyway, so start at random instead."""
    import dataclasses

    if config.init not in ("text", "labels"):
        return config
    names = {f.name for f in dataclasses.fields(config)}
    cleared = {k: None for k in ("init_text", "label_words", "tokenizer") if k in names}
    return dataclasses.replace(config, init="random", **cleared)


def check_prompt_fits(backbone: nn.Module, n: int) -> None:
    """A model with a learned table of absolute positions (BERT's position_embeddings, GPT-2's wpe) cannot read more
    tokens than the table has rows, and the prompt takes n of them before any input token: refuse it here, not
    inside attention at the first forward pass. (Rotary models such as Llama have no table and no hard limit.)"""
    table = getattr(getattr(backbone, "embeddings", None), "position_embeddings", None) or getattr(backbone, "wpe", None)
    if isinstance(table, nn.Embedding) and n + 2 > table.num_embeddings:
        raise ValueError(f"A prompt of {n} tokens does not fit this model: it has {table.num_embeddings} positions, "
                         f"the prompt takes {n} and every input needs at least 2 more (e.g. [CLS], [SEP]). Use a prompt of "
                         f"at most {table.num_embeddings - 2} tokens, and leave room for your inputs (n=20 is typical).")


def check_prompt_target(backbone: nn.Module) -> None:
    """Raise before anything is edited if this transformers model cannot take a soft prompt (again)."""
    if hasattr(backbone, "prompt_encoder"):
        raise ValueError("This model already has a soft prompt (prompt tuning or P-tuning): start from a fresh model.")
    embeddings = backbone.get_input_embeddings()
    if not isinstance(embeddings, nn.Embedding):
        raise TypeError(f"A soft prompt is n learned rows in front of the token embeddings, but this "
                        f"{type(backbone).__name__} reads {type(embeddings).__name__} (e.g. image patches), not a "
                        "table of token embeddings: there are no tokens to put a prompt in front of. Use LoRA, IA3 "
                        "or adapters on this model.")


def peft_prompt_config(model: nn.Module, config: PeftConfig, peft_type: str, **extra) -> dict:
    """adapter_config.json for a peft prompt-learning method (PROMPT_TUNING, P_TUNING) on this backbone.
    (minipeft.export_peft adds modules_to_save and base_model_name_or_path.)"""
    backbone = find_backbone(model)
    cfg = backbone.config
    name = type(backbone).__name__
    task = ("SEQ_2_SEQ_LM" if getattr(cfg, "is_encoder_decoder", False) else
            "CAUSAL_LM" if backbone.can_generate() else "SEQ_CLS" if name.endswith("ForSequenceClassification")
            else "TOKEN_CLS" if name.endswith("ForTokenClassification") else "FEATURE_EXTRACTION")
    return {"peft_type": peft_type, "task_type": task, "num_virtual_tokens": config.length,
            "token_dim": cfg.hidden_size, "num_transformer_submodules": 1,
            "num_attention_heads": cfg.num_attention_heads, "num_layers": cfg.num_hidden_layers,
            "inference_mode": True, **extra}


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
        if getattr(backbone.config, "is_encoder_decoder", False):   # T5, BART: see prepend_to_encoder
            backbone.get_encoder().register_forward_pre_hook(partial(prepend_to_encoder, backbone), with_kwargs=True)
            hook = widen_cross_attention_mask
        else:
            hook = prepend_prompt
        backbone._minipeft_prompt_hook = backbone.register_forward_pre_hook(hook, with_kwargs=True)


def _pad_left(x: torch.Tensor, n: int, value) -> torch.Tensor:
    return torch.cat([x.new_full((x.shape[0], n), value), x], dim=1)  # (B, T) -> (B, n+T)


def _shift_positions(pos: torch.Tensor, n: int, prefill: bool) -> torch.Tensor:
    if not prefill:
        return pos + n  # (B, 1) while decoding: the prompt occupies positions 0..n-1
    prompt_pos = torch.arange(n, device=pos.device, dtype=pos.dtype).expand(pos.shape[0], n)
    return torch.cat([prompt_pos, pos + n], dim=1)  # (B, n+T)


def prepend_prompt(backbone: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook: rewrite the call so the model sees [P ; X] (see the module docstring)."""
    if getattr(backbone, "minipeft_disabled", False):       # inside minipeft.disabled(model): the base model
        return None
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


# --------------------------------------------------------------------------------------------- encoder-decoders
# T5, BART: the prompt enters the ENCODER's input only (peft's num_transformer_submodules=1), so the encoder's output
# has n + T positions and the decoder's cross-attention mask needs n more columns. generate() calls the encoder on its
# own and then the whole model with the encoder's output, so the prompt is prepended by a hook on the encoder, and a
# hook on the whole model widens the mask it hands the decoder (and the encoder: that one then leaves it alone).
def prepend_to_encoder(backbone: nn.Module, encoder: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    if getattr(backbone, "minipeft_disabled", False):
        return None
    names = list(inspect.signature(encoder.forward).parameters)
    kwargs = {**dict(zip(names, args)), **kwargs}
    prompt = backbone.prompt_encoder
    n = prompt.embedding.num_embeddings
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        embeds = backbone.get_input_embeddings()(kwargs["input_ids"])                # (B, T, d)
    B, T = embeds.shape[:2]
    kwargs["inputs_embeds"] = torch.cat([prompt().to(embeds.dtype).expand(B, n, -1), embeds], dim=1)  # (B, n+T, d)
    kwargs["input_ids"] = None
    if (mask := kwargs.get("attention_mask")) is not None and mask.shape[1] == T:   # not yet widened by the model
        kwargs["attention_mask"] = _pad_left(mask, n, 1)                             # (B, n+T)
    return (), kwargs


def widen_cross_attention_mask(backbone: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    if getattr(backbone, "minipeft_disabled", False):
        return None
    names = list(inspect.signature(backbone.forward).parameters)
    kwargs = {**dict(zip(names, args)), **kwargs}
    mask = kwargs.get("attention_mask")
    if mask is None:
        return (), kwargs
    n = backbone.prompt_encoder.embedding.num_embeddings
    encoded = kwargs.get("encoder_outputs")
    if encoded is not None:                                    # generate(): the encoder already ran, prompt included
        length = encoded[0].shape[1] - n
    else:
        tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        length = tokens.shape[1]
    if mask.shape[1] == length:
        kwargs["attention_mask"] = _pad_left(mask, n, 1)       # (B, n+T): the prompt is always attended to
    return (), kwargs


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
