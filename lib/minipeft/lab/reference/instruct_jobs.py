"""Chapter 11's instruction-tuning jobs (grid 11_instruct): does tuning SmolLM2 on instructions for OTHER tasks change
its zero-shot accuracy on a task it never saw (FLAN's question, `lab.instruct`)?

    {"method": "instruct", "tuning": "none" | "instructions" | "no instructions", ...}

"none": the model as it is. "instructions": a LoRA trained on the mixture of `instruct.TUNING` tasks, each row its
task's instruction, input and answer (loss on the answer). "no instructions": the same rows, inputs and answers, the
instruction removed (the control: exposure without instructions). The job's seed sets the LoRA's initialisation and
the batch order (the data are the same for every seed). Every job scores, by rank classification with the
instruction, the held-out task (sentiment on `heldout` balanced Rotten Tomatoes test snippets: "predictions", the
grid's labels) and each tuning task's test rows ("tasks": {task: accuracy, predictions, labels fingerprint}, read by
Reference with analysis=("tasks", name)).
"""

from __future__ import annotations

import copy
import time

import torch

from ...core.config import PeftConfig
from ...core.inject import inject
from .. import fewshot, generation, instruct
from .fewshot_jobs import decoder_and_tokenizer

INSTRUCT_JOBS = ("instruct",)
TUNINGS = ("none", "instructions", "no instructions")
TASK_TEST = 30       # test rows of each tuning task (10 or 15 per label): with 3 seeds and 3 tasks, enough to see
                     # whether the tuning learned its tasks (the held-out task is what the grid measures)


def heldout(n: int) -> tuple[list[str], list[int]]:
    rows = instruct.examples("sentiment", "test", n)
    return [t for t, _ in rows], [y for _, y in rows]


def task_labels(name: str) -> list[int]:
    """The labels a job's "tasks" entry for `name` was scored against (Reference.labels_for reads them back)."""
    return [y for _, y in instruct.examples(name, "test", TASK_TEST)]


def run_instruct(job, limit: int | None = None, progress: bool = True) -> tuple[dict, list[int]]:
    """(metrics, held-out labels) of one 11_instruct job; `limit` cuts every scored set and the steps (smoke runs)."""
    from .jobs import labels_fingerprint

    spec = job.config.method
    if spec["tuning"] not in TUNINGS:
        raise ValueError(f"an instruct job's tuning is one of {TUNINGS}, got {spec['tuning']!r}.")
    model, tokenizer = decoder_and_tokenizer()
    metrics: dict = dict(tuning=spec["tuning"])
    if spec["tuning"] != "none":
        torch.manual_seed(job.seed)
        model = inject(copy.deepcopy(model), PeftConfig.from_dict(spec["lora"]))   # the cached decoder stays clean
        prompts, answers = instruct.mixture(spec["train_per_task"], instructions=spec["tuning"] == "instructions",
                                            tasks=tuple(spec["tasks"]))
        start = time.perf_counter()
        losses = generation.tune(model, tokenizer, prompts, answers, steps=min(spec["steps"], 2) if limit else
                                 spec["steps"], batch_size=spec["batch_size"], lr=spec["lr"], seed=job.seed, end=False)
        metrics.update(train_seconds=round(time.perf_counter() - start, 1), losses=[round(x, 5) for x in losses],
                       trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                       rows=len(prompts))
    start = time.perf_counter()
    metrics["tasks"] = {}
    for name in spec["tasks"]:
        rows = instruct.examples(name, "test", TASK_TEST)[:limit]
        labels = [y for _, y in rows]
        preds = fewshot.score_texts(model, tokenizer, instruct.TASKS[name].pattern(), [t for t, _ in rows]).predictions
        metrics["tasks"][name] = dict(accuracy=sum(p == y for p, y in zip(preds, labels)) / len(labels),
                                      predictions="".join(map(str, preds)), labels=labels_fingerprint(labels))
    texts, labels = heldout(spec["heldout"])
    texts, labels = texts[:limit], labels[:limit]
    preds = fewshot.score_texts(model, tokenizer, instruct.SENTIMENT.pattern(), texts, progress=progress).predictions
    metrics.update(score_seconds=round(time.perf_counter() - start, 1),
                   accuracy=sum(p == y for p, y in zip(preds, labels)) / len(labels),
                   predictions="".join(map(str, preds)))
    return metrics, labels
