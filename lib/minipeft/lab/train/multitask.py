"""Training one model on K tasks at once (multitask prompt tuning, Wang et al. 2023 §3.2): minipeft's ``fit`` with
a round-robin schedule, one task per batch, each task's prompt switched on for its batches; optionally distilled
from one teacher per task (§3.2's source training), and the shared prompt carried to a new task (§3.3).

    clf = chapter.classifier(encoder, MPTConfig(length=20, tasks=["amazon", "nyt", "tweets"]))
    result = fit_multitask(clf, tokenizer, train_sets, eval_sets, TrainConfig(max_steps=24))
    result.accuracy          # {"amazon": ..., "nyt": ..., "tweets": ...}, each task scored with its own prompt

    fit_multitask(student, tok, train_sets, eval_sets, config, teachers={"amazon": t1, "nyt": t2})   # + KL to teachers
    transfer_prompt(student, target)      # the target task's MPT prompt starts from the sources' shared P*
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...core.params import trainable_parameters
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


class Distilled(nn.Module):
    """Wang et al. 2023 §3.2, the source training: the student's own loss on a batch of task k, plus a pull of its
    output distribution towards task k's teacher (a prompt trained on task k alone), Hinton-style:

        L = L_task + weight · τ² · KL( softmax(z_teacher / τ) ‖ softmax(z_student / τ) )

    (the paper adds a second term matching hidden states; left out here). It wraps the student so that ``fit``
    trains it unchanged: the teachers are frozen and always run in eval mode (no dropout), only the student learns.
    """

    def __init__(self, student: nn.Module, teachers: dict[str, nn.Module], weight: float = 1.0,
                 temperature: float = 2.0):
        super().__init__()
        names = multitask_prompt(student).tasks
        if set(teachers) != set(names):
            raise ValueError(f"One teacher per task {names} is needed for distillation; got {sorted(teachers)}.")
        if weight < 0 or temperature <= 0:
            raise ValueError(f"weight must be >= 0 and temperature > 0, got weight={weight}, temperature={temperature}.")
        self.student, self.names = student, names
        self.teachers = nn.ModuleDict({k: t.requires_grad_(False).eval() for k, t in teachers.items()})
        self.weight, self.temperature = float(weight), float(temperature)
        self.last_kl = float("nan")                      # the distillation term of the latest batch (for plots)

    def train(self, mode: bool = True):
        self.student.train(mode)                         # the teachers stay in eval mode
        return self

    def forward(self, labels=None, **inputs):
        out = self.student(labels=labels, **inputs)
        task = self.names[multitask_prompt(self.student).task]
        with torch.no_grad():
            teacher_logits = self.teachers[task](**inputs).logits
        tau = self.temperature
        kl = F.kl_div(F.log_softmax(out.logits / tau, -1), F.log_softmax(teacher_logits / tau, -1),
                      log_target=True, reduction="batchmean") * tau ** 2
        self.last_kl = kl.item()
        out.loss = out.loss + self.weight * kl
        return out


@torch.no_grad()
def transfer_prompt(source: nn.Module, target: nn.Module) -> nn.Module:
    """Wang et al. 2023 §3.3: start the target task's multitask prompt from the shared prompt P* learned on the
    source tasks (its task factors u, v start at 1, so the target begins exactly at P*); then train it as usual."""
    p_source, p_target = multitask_prompt(source).embedding.weight, multitask_prompt(target).embedding.weight
    if p_source.shape != p_target.shape:
        raise ValueError(f"The shared prompts differ in shape: source {tuple(p_source.shape)}, target "
                         f"{tuple(p_target.shape)}. Build the target with the same length n on the same backbone.")
    p_target.copy_(p_source)
    return target


def fit_multitask(model: nn.Module, tokenizer, train_sets: dict, eval_sets: dict, config=None, *,
                  teachers: dict[str, nn.Module] | None = None, distill_weight: float = 1.0,
                  temperature: float = 2.0) -> MultitaskResult:
    """Train a model carrying an MPTConfig prompt on K tasks with minipeft's ``fit`` (batches round-robin over the
    tasks, AdamW + schedule), then evaluate each task with its own prompt.

    ``config`` is a minipeft.train.TrainConfig: epochs count passes over the LARGEST task (every task gets the same
    number of steps), max_steps caps the total over all tasks. ``teachers`` (one trained model per task, e.g. a
    prompt trained on that task alone) adds §3.2's distillation term (``Distilled``); the teachers are frozen.
    """
    config = config or TrainConfig()
    names = multitask_prompt(model).tasks
    if set(train_sets) != set(names) or set(eval_sets) != set(names):
        raise ValueError(f"train_sets and eval_sets need one dataset per task {names}; got "
                         f"{sorted(train_sets)} and {sorted(eval_sets)}.")
    train = {k: as_tokenized(train_sets[k], tokenizer, config.max_length) for k in names}
    schedule = RoundRobin(model, train, config.batch_size)
    trained = model if teachers is None else Distilled(model, teachers, distill_weight, temperature)
    result = fit(trained, tokenizer, None, None, config, schedule=schedule)
    predictions = {}
    for name in names:
        with use_task(model, name):
            predictions[name] = predict(model, tokenizer, eval_sets[name], config.eval_batch_size, config.max_length)
    return MultitaskResult(accuracy={k: accuracy(p, eval_sets[k]["label"]) for k, p in predictions.items()},
                           predictions=predictions, losses=[(schedule.task_of(i), loss) for i, loss in enumerate(result.losses)],
                           steps=result.steps, train_time=result.train_time,
                           **dict(zip(("trainable", "total"), trainable_parameters(model))))   # the student's own
