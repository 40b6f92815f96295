"""Training one model on K tasks at once (multitask prompt tuning, Wang et al. 2023 §3.2 without distillation):
minipeft's ``fit`` with a round-robin schedule, one task per batch, each task's prompt switched on for its batches.

    clf = chapter.classifier(encoder, MPTConfig(length=20, tasks=["amazon", "nyt", "tweets"]))
    result = fit_multitask(clf, tokenizer, train_sets, eval_sets, TrainConfig(max_steps=24))
    result.accuracy          # {"amazon": ..., "nyt": ..., "tweets": ...}, each task scored with its own prompt
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn

from ...methods.mpt import multitask_prompt, use_task
from .loop import TrainConfig, accuracy, as_tokenized, fit, length_grouped_batches, predict


@dataclass
class MultitaskResult:
    accuracy: dict[str, float]          # per task, on its evaluation set, after training
    predictions: dict[str, list[int]]   # per task, the prediction for every evaluation row (paired tests need them)
    losses: list[tuple[str, float]]     # (task, training loss) per step, in the order the steps ran
    steps: int
    train_time: float                   # seconds in the training loop (evaluation excluded)
    trainable: int
    total: int


class RoundRobin:
    """A schedule for minipeft's ``fit``: one task per batch, in turn (every task gets the same number of steps),
    each task's prompt switched on for its batches. An epoch is one pass over the LARGEST task's batches, per task."""

    def __init__(self, model: nn.Module, train_sets: dict, batch_size: int):
        self.model, self.train, self.batch_size = model, train_sets, batch_size
        self.names = list(train_sets)
        self.largest = max(math.ceil(len(ds) / batch_size) for ds in train_sets.values())

    def steps(self, epochs: float) -> int:
        return max(1, math.ceil(epochs * self.largest) * len(self.names))

    def task_of(self, step: int) -> str:
        return self.names[step % len(self.names)]

    def __call__(self, gen: torch.Generator):
        def batches(name):  # a task's batches start over (reshuffled) when they run out
            lengths = [len(ids) for ids in self.train[name]["input_ids"]]
            while True:
                yield from length_grouped_batches(lengths, self.batch_size, gen)

        streams = {name: batches(name) for name in self.names}
        for step in itertools.count():
            name = self.task_of(step)
            yield self.train[name], next(streams[name]), use_task(self.model, name)


def fit_multitask(model: nn.Module, tokenizer, train_sets: dict, eval_sets: dict, config=None) -> MultitaskResult:
    """Train a model carrying an MPTConfig prompt on K tasks with minipeft's ``fit`` (batches round-robin over the
    tasks, AdamW + schedule), then evaluate each task with its own prompt.

    ``config`` is a minipeft.train.TrainConfig: epochs count passes over the LARGEST task (every task gets the same
    number of steps), max_steps caps the total over all tasks.
    """
    config = config or TrainConfig()
    names = multitask_prompt(model).tasks
    if set(train_sets) != set(names) or set(eval_sets) != set(names):
        raise ValueError(f"train_sets and eval_sets need one dataset per task {names}; got "
                         f"{sorted(train_sets)} and {sorted(eval_sets)}.")
    train = {k: as_tokenized(train_sets[k], tokenizer, config.max_length) for k in names}
    schedule = RoundRobin(model, train, config.batch_size)
    result = fit(model, tokenizer, None, None, config, schedule=schedule)
    predictions = {}
    for name in names:
        with use_task(model, name):
            predictions[name] = predict(model, tokenizer, eval_sets[name], config.eval_batch_size, config.max_length)
    return MultitaskResult(accuracy={k: accuracy(p, eval_sets[k]["label"]) for k, p in predictions.items()},
                           predictions=predictions, losses=[(schedule.task_of(i), loss) for i, loss in enumerate(result.losses)],
                           steps=result.steps, train_time=result.train_time, trainable=result.trainable,
                           total=result.total)
