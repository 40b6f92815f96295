"""Chapter 11's reference jobs: one user's adapter on SmolLM2, its sampled generations, and one judge for them all.

    {"method": "serve", "user": "fresh" | "rotten" | "dpo" | "base", ...the chapter's default settings...}

A job trains ONE user's LoRA as chapter 11's section 2 or 3 does (steered on 96 positive or negative Rotten Tomatoes
snippets, or DPO on 96 pairs; "base" trains nothing), with the job's seed setting the LoRA's initialisation, the
batch order and the sampling, then samples `rows` answers to the chapter's prompt (top-p 0.9) and has the judge label
each one. The judge is the chapter's: MiniLM + LoRA on W_q, W_v, one epoch of 1,024 Rotten Tomatoes snippets, seed 0,
ALWAYS seed 0 (every job's generations are read by the same classifier, so the users' shares differ by the users, not
by their judges); it is trained once per process (`judge`) and every record stores its validation accuracy.

A record's "predictions" are the judge's labels, one digit per generation ("1" = positive). The grid's "labels" are
all 1 (jobs.grid_labels), so Reference's `accuracies` / `correct` / `compare` read the share judged POSITIVE: a
comparison of two users is the difference of their positive shares, with the two-level bootstrap over seeds and
generations. (Generation i of one user and generation i of another share nothing but the sampling seed: the pairing
by index carries no information, and the bootstrap then acts as an unpaired one, which is valid for independent
samples.) Reference's did-not-learn check (against a majority class of 1) means nothing here: the chapter checks the
JUDGE's accuracy instead, stored in every record.
"""

from __future__ import annotations

import copy
import functools
import time

import torch

from ...core.config import PeftConfig
from ...core.inject import inject
from .. import data, generation
from .fewshot_jobs import decoder_and_tokenizer

SERVING_JOBS = ("serve",)
USERS = ("base", "fresh", "rotten", "dpo")


@functools.lru_cache(maxsize=2)
def judge(train_rows: int, eval_rows: int, lr: float, batch_size: int, seed: int = 0):
    """The chapter's judge (generation.train_judge), trained once per process: every job reads with the same one."""
    return generation.train_judge(train_rows, eval_rows, lr, batch_size, seed)


@functools.lru_cache(maxsize=2)
def _texts(label: int) -> list[str]:
    train = data.rotten_tomatoes()["train"][:]                      # {column: list}: one read, not one per row
    return [t for t, y in zip(train["text"], train["label"]) if y == label]


def run_serving(job, limit: int | None = None, progress: bool = True) -> tuple[dict, list[int]]:
    """(metrics, labels = 1 per generation) of one chapter-11 job; `limit` cuts the generations, the training data,
    the steps (2 at most) and the judge's data (smoke runs)."""
    spec = job.config.method
    user = spec["user"]
    if user not in USERS:
        raise ValueError(f"a serving job's user is one of {USERS}, got {user!r}.")
    model, tokenizer = decoder_and_tokenizer()
    tokenizer.padding_side = "left"                      # (every prompt is the same: no padding in fact)
    cut = (lambda n: min(n, limit)) if limit else (lambda n: n)
    steps_cut = (lambda n: min(n, 2)) if limit else (lambda n: n)
    j = spec["judge"]
    classifier, etok, judged = judge(cut(j["train"]), cut(j["eval"]), j["lr"], j["batch_size"])
    metrics: dict = dict(user=user, judge=judged)
    torch.manual_seed(job.seed)
    start = time.perf_counter()
    if user != "base":
        model = inject(copy.deepcopy(model), PeftConfig.from_dict(spec["lora"]))   # the cached decoder stays clean
        n = cut(spec["responses"])
        fresh, rotten = _texts(1), _texts(0)
        if user in ("fresh", "rotten"):                  # section 2: the first n snippets of the user's label
            texts = (fresh if user == "fresh" else rotten)[:n]
            metrics["losses"] = [round(x, 5) for x in generation.steer(
                model, tokenizer, spec["prompt"], texts, steps=steps_cut(spec["steps"]),
                batch_size=spec["batch_size"], lr=spec["lr"], seed=job.seed)]
        else:                                            # section 3: DPO on the LAST n pairs (others than steered)
            history = generation.dpo(model, tokenizer, spec["prompt"], fresh[-n:], rotten[-n:],
                                     steps=steps_cut(spec["dpo_steps"]), batch_size=spec["dpo_batch"], lr=spec["lr"],
                                     beta=spec["beta"], seed=job.seed)
            metrics["losses"] = [round(loss, 5) for loss, _ in history]
            metrics["margins"] = [round(m, 5) for _, m in history]
        metrics["train_seconds"] = round(time.perf_counter() - start, 1)
        metrics["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows = cut(spec["rows"])
    start = time.perf_counter()
    texts = generation.sample(model.generate, tokenizer, spec["prompt"], rows, max_new_tokens=spec["new_tokens"],
                              seed=job.seed)
    metrics["generate_seconds"] = round(time.perf_counter() - start, 1)
    from datasets import Dataset

    from ..train import predict
    labels = predict(classifier, etok, Dataset.from_dict({"text": texts}))
    share = sum(labels) / len(labels)
    # "accuracy" against the grid's labels (all 1) IS the positive share: what Reference and the runner read
    metrics.update(positive_share=share, accuracy=share, predictions="".join(map(str, labels)), texts=texts)
    return metrics, [1] * rows
