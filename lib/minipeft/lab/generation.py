r"""Steering a decoder's generations with an adapter, and judging them (chapter 11).

One instruction-style prompt, many responses: a user's adapter is trained on (prompt, response) pairs whose responses
all have the property the user wants (here: positive, or negative, movie snippets), with the language-model loss on
the RESPONSE tokens only (the prompt is given, not learned; the same tokens `fewshot.pairs_from_ids` marks):

    "Write a one-sentence movie review.\nReview:" + " a gripping, funny film.<|im_end|>"
     └──────── prompt: no loss ────────────────┘   └──── response: − mean log p(token | before) ───┘

This is instruction tuning in miniature (one instruction; FLAN / InstructGPT use thousands). Preference tuning (DPO,
`lab.preference`) trains on pairs instead: the same prompt, a preferred and a dispreferred response.
A judge — an encoder classifier trained on Rotten Tomatoes (chapter 02) — labels each generated text; the share it
calls positive, with its binomial interval, says whether an adapter steers.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .fewshot import Choices, pairs_from_ids, token_log_probs
from .preference import dpo_loss


def response_pairs(tokenizer, prompt: str, responses: list[str], end: bool = True) -> tuple[list, list]:
    """Token ids of the prompt (once per response) and of each response (" " + text, + the end-of-text token if
    `end`, so that the adapter also learns where a review stops)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if end and tokenizer.eos_token_id is not None else []
    r = [ids + eos for ids in tokenizer([" " + t.strip() for t in responses], add_special_tokens=False)["input_ids"]]
    return [p] * len(r), r


def response_loss(model: nn.Module, batch: Choices) -> torch.Tensor:
    """The language-model loss on the responses' tokens only: − mean over them of log p(token | what precedes)."""
    return -token_log_probs(model, batch).sum() / batch.answer_mask.sum()


def batches(n: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """The rows of each of `steps` batches: seeded shuffles of range(n), one after another (an epoch at a time)."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(steps * batch_size // n + 1)])  # long enough
    return [order[step * batch_size:(step + 1) * batch_size].tolist() for step in range(steps)]


def steer(model: nn.Module, tokenizer, prompt: str, responses: list[str], steps: int, batch_size: int = 8,
          lr: float = 2e-3, seed: int = 0) -> list[float]:
    """Train the model's trainable parameters (its adapter) to answer `prompt` with `responses`: `steps` Adam steps
    on batches drawn in a seeded order. Returns the loss of every step."""
    return tune(model, tokenizer, [prompt] * len(responses), responses, steps, batch_size, lr, seed)


def tune(model: nn.Module, tokenizer, prompts: list[str], responses: list[str], steps: int, batch_size: int = 8,
         lr: float = 2e-3, seed: int = 0, end: bool = True) -> list[float]:
    """`steer` with a prompt per response: instruction tuning (each row its own instruction and input, the loss on
    its answer only; `lab.instruct` mixes several tasks this way). `end`: the answers end with the end-of-text token.
    Returns the loss of every step."""
    if steps < 1 or batch_size < 1 or not responses or len(prompts) != len(responses):
        raise ValueError(f"tune needs steps >= 1, batch_size >= 1 and one prompt per response, some of them "
                         f"(got {steps}, {batch_size}, {len(prompts)} prompts, {len(responses)} responses).")
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    _, answers = response_pairs(tokenizer, "", responses, end)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has nothing to train: inject an adapter first (mp.inject(model, config)).")
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    model.train()
    for rows in batches(len(answers), steps, batch_size, seed):
        loss = response_loss(model, pairs_from_ids([prompt_ids[i] for i in rows], [answers[i] for i in rows],
                                                   tokenizer.pad_token_id or 0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def dpo(model: nn.Module, tokenizer, prompt: str, chosen: list[str], rejected: list[str], steps: int,
        batch_size: int = 4, lr: float = 2e-3, beta: float = 0.1, seed: int = 0) -> list[tuple[float, float]]:
    """DPO on (prompt, chosen[i], rejected[i]) pairs, the reference being the model with its adapter off
    (`preference.dpo_loss`). Returns (loss, mean reward margin) of every step, measured before the step."""
    if len(chosen) != len(rejected):
        raise ValueError(f"one rejected response per chosen one: {len(chosen)} chosen, {len(rejected)} rejected.")
    prompts, good = response_pairs(tokenizer, prompt, chosen)
    _, bad = response_pairs(tokenizer, prompt, rejected)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = []
    model.train()
    for rows in batches(len(good), steps, batch_size, seed):
        loss, margin = dpo_loss(model, [prompts[i] for i in rows], [good[i] for i in rows], [bad[i] for i in rows],
                                beta=beta, pad_id=tokenizer.pad_token_id or 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((loss.item(), margin.item()))
    model.eval()
    return history


@torch.no_grad()
def sample(generate, tokenizer, prompt: str, rows: int, max_new_tokens: int = 24, seed: int = 0,
           **kwargs) -> list[str]:
    """`rows` sampled continuations of `prompt` (top-p 0.9) from `generate` (a model's or an AdapterBank's
    ``generate``; pass ``adapter_names=[...]`` for a bank), decoded up to the end-of-text token."""
    batch = tokenizer([prompt] * rows, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(seed)
    out = generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, top_p=0.9, temperature=1.0,
                   pad_token_id=tokenizer.pad_token_id, **kwargs)                  # (rows, T + new)
    return [t.strip() for t in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]


def train_judge(train_rows: int, eval_rows: int, lr: float, batch_size: int, seed: int = 0, progress: bool = False):
    """(classifier, tokenizer, metrics): the judge — MiniLM + LoRA r = 8 on W_q, W_v (chapter 02), one epoch on
    `train_rows` Rotten Tomatoes training snippets, validated on `eval_rows` validation snippets (both drawn with seed
    0: judges of one size see the same snippets; `seed` sets the training). metrics: validation accuracy, the
    majority-class rate, the validation size, whether it learned (above the majority by more than its interval),
    its validation predictions and the training seconds. Chapter 11's live judge and its reference jobs both use it."""
    from . import chapter, data, stats
    from ..methods.lora import LoRAConfig
    from .backbones import load_encoder
    from .train import TrainConfig

    encoder, tokenizer = load_encoder()
    rt = data.rotten_tomatoes()
    train = data.tokenize(data.subsample(rt["train"], train_rows, seed=0), tokenizer)
    val = data.tokenize(data.subsample(rt["validation"], eval_rows, seed=0), tokenizer)
    start = time.perf_counter()
    model, result = chapter.run(encoder, tokenizer, train, val, LoRAConfig(r=8, targets=["query", "value"]),
                                TrainConfig(lr=lr, batch_size=batch_size, seed=seed, progress=progress))
    majority = chapter.majority_accuracy(val["label"])
    return model, tokenizer, dict(accuracy=result.accuracy, majority=majority, examples=len(val),
                                  learned=bool(stats.learned(result.accuracy, majority, examples=len(val))),
                                  predictions="".join(map(str, result.predictions)),
                                  train_seconds=round(time.perf_counter() - start, 1))
