"""Chapter 10's reference jobs: the SmolLM2 decoder, k Rotten Tomatoes examples, scored on a fixed test subset.

    {"method": "icl", "k": 16}                                 in-context learning: k demonstrations, nothing trained
    {"method": "fewshot_train", "peft": {"method": "ia3"}, "k": 16, "losses": ["lm", "ul", "ln"], "steps": 5}
                                                               prompt-based fine-tuning of a PEFT method on those k
    {..."fewshot_train", ..., "demo_sets": 2}                  the same, with LM-BFF §6's demonstrations: in training,
                                                               one other example per label before each example (drawn
                                                               afresh each step); at test, each snippet after its own
                                                               drawn demonstrations, scores averaged over 2 draws

A job's seed is the DRAW: which k training examples (fewshot.draw_examples, k/2 per label). Draw d shows in-context
learning and trains the PEFT methods on the same k examples. Every job is scored on the same FEWSHOT_TEST snippets
of the test split (a seeded subset: the decoder scores about one snippet a second on a busy 2-core CPU), with
fewshot.Pattern's prompt and verbaliser and length-normalised rank classification (T-Few §3.2).
"""

from __future__ import annotations

import copy
import functools
import time

import torch

from ...core.config import PeftConfig
from ...core.inject import inject
from .. import data, fewshot

FEWSHOT_JOBS = ("icl", "fewshot_train")
FEWSHOT_TEST = 100   # test snippets every chapter-10 job is scored on: one standard error ≤ √(0.25/100) = 0.05


@functools.lru_cache(maxsize=1)
def decoder_and_tokenizer():
    from ..backbones import load_decoder
    return load_decoder()


def fewshot_test(limit: int | None = None) -> tuple[list[str], list[int]]:
    """(texts, labels): the FEWSHOT_TEST snippets of Rotten Tomatoes' test split every chapter-10 job is scored on,
    half of each label (majority-class rate 0.5), drawn as the examples are (seed 0)."""
    test = data.rotten_tomatoes()["test"]
    rows = fewshot.draw_examples(test["text"], test["label"], FEWSHOT_TEST, seed=0)[:limit]
    return [t for t, _ in rows], [y for _, y in rows]


def run_fewshot(job, limit: int | None = None, progress: bool = True) -> tuple[dict, list[int]]:
    """(metrics, test labels) of one chapter-10 job; `limit` cuts the test subset (smoke runs)."""
    spec, settings = job.config.method, job.config.settings()
    model, tokenizer = decoder_and_tokenizer()
    train, (texts, labels) = data.rotten_tomatoes()["train"], fewshot_test(limit)
    pattern = fewshot.Pattern()
    examples = fewshot.draw_examples(train["text"], train["label"], spec["k"], seed=job.seed)
    metrics: dict = dict(k=spec["k"])
    if spec["method"] == "icl":
        shown = examples
    else:
        torch.manual_seed(job.seed)
        model = inject(copy.deepcopy(model), PeftConfig.from_dict(spec["peft"]))   # the cached decoder stays clean
        start = time.perf_counter()
        sets = spec.get("demo_sets", 0)               # 0: T-Few's recipe, no demonstrations in training or test
        history = fewshot.train_on_examples(model, tokenizer, pattern, examples, steps=spec["steps"],
                                            lr=settings["lr"], losses=tuple(spec["losses"]), progress=progress,
                                            demonstrations=bool(sets), seed=job.seed)
        metrics.update(train_seconds=round(time.perf_counter() - start, 1), losses=history,
                       trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))
        shown = ()                                     # without demo_sets, a trained model predicts from the query alone
    start = time.perf_counter()
    if spec["method"] != "icl" and spec.get("demo_sets"):
        scored = fewshot.score_with_demonstrations(model, tokenizer, pattern, texts, examples, sets=spec["demo_sets"],
                                                   seed=job.seed, progress=progress)
        metrics.update(demo_sets=spec["demo_sets"])
    else:
        scored = fewshot.score_texts(model, tokenizer, pattern, texts, shown, progress=progress)
    metrics.update(score_seconds=round(time.perf_counter() - start, 1),
                   tokens_per_prediction=round(scored.tokens_per_prediction, 1), prefix_tokens=scored.prefix_tokens,
                   accuracy=sum(p == y for p, y in zip(scored.predictions, labels)) / len(labels),
                   predictions="".join(map(str, scored.predictions)))
    return metrics, labels
