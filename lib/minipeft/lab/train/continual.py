"""Tasks one after the other (chapter 12): what a model forgets, and what separate adapters cannot forget.

    result = fit_sequence(model, tok, {"amazon": a, "nyt": n, "tweets": t}, tests, TrainConfig(...))
    result.accuracy[i]["amazon"]     accuracy on amazon's test split after the i-th training stage
    result.forgetting("amazon")      accuracy right after learning amazon minus at the end (> 0: forgotten)
    backward_transfer(matrix)        the mean change on the earlier tasks by the end (< 0: forgotten), GEM's BWT

Houlsby et al. 2019 (§1) motivate adapters with exactly this: fine-tuning one network on task after task forgets the
earlier ones (catastrophic forgetting, McCloskey & Cohen 1989), and multi-task learning needs every task's data at
once. One adapter per task on a frozen base forgets nothing by construction: `fit_per_task` trains them in the same
order and scores every task after every stage, so the "nothing forgotten" is measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .loop import TrainConfig, accuracy, as_tokenized, fit, predict


@dataclass
class SequenceResult:
    order: list[str]                                   # the training order
    accuracy: list[dict[str, float]]                   # after stage i: {task: accuracy on its evaluation set}
    predictions: list[dict[str, list[int]]]            # after stage i: {task: prediction for every evaluation row}
    losses: list[list[float]] = field(default_factory=list)  # per stage, its training losses
    train_time: float = 0.0                            # seconds in the training loops, all stages

    def forgetting(self, task: str) -> float:
        """Accuracy on `task` right after its own stage minus after the last stage (positive: forgotten)."""
        own = self.order.index(task)
        return self.accuracy[own][task] - self.accuracy[-1][task]

    def matrix(self) -> list[list[float]]:
        """R[i][j]: accuracy on the j-th task of the order after the i-th stage (T x T), what backward_transfer reads."""
        return [[stage[task] for task in self.order] for stage in self.accuracy]

    def curve(self, task: str) -> list[float]:
        """Accuracy on `task` after every stage (before its own stage too: what the model does on it untrained)."""
        return [stage[task] for stage in self.accuracy]


def _score_all(models: dict[str, nn.Module], tokenizer, eval_sets: dict, config: TrainConfig):
    acc, preds = {}, {}
    for task, ds in eval_sets.items():
        p = predict(models[task], tokenizer, ds, config.eval_batch_size, config.max_length)
        acc[task], preds[task] = accuracy(p, ds["label"]), p
    return acc, preds


def fit_sequence(model: nn.Module, tokenizer, train_sets: dict, eval_sets: dict,
                 config: TrainConfig | None = None) -> SequenceResult:
    """Train ONE model on each task in turn (the dict's order), scoring every task's evaluation set after each stage.
    Each stage is a full `fit` (its own optimiser and learning-rate schedule), as when a model is fine-tuned again
    for the next task."""
    config = config or TrainConfig()
    _check(train_sets, eval_sets)
    eval_sets = {t: as_tokenized(ds, tokenizer, config.max_length) for t, ds in eval_sets.items()}
    result = SequenceResult(order=list(train_sets), accuracy=[], predictions=[])
    for task, train_ds in train_sets.items():
        stage = fit(model, tokenizer, train_ds, None, config)
        result.losses.append(stage.losses)
        result.train_time += stage.train_time
        acc, preds = _score_all(dict.fromkeys(eval_sets, model), tokenizer, eval_sets, config)
        result.accuracy.append(acc)
        result.predictions.append(preds)
    return result


def fit_per_task(models: dict[str, nn.Module], tokenizer, train_sets: dict, eval_sets: dict,
                 config: TrainConfig | None = None) -> SequenceResult:
    """One model per task (e.g. one adapter each on copies of a frozen base), trained in the same order as
    `fit_sequence`; after each stage every task is scored with ITS OWN model (a task not trained yet: its untrained
    model). A task's accuracy cannot change after its stage unless training another task touched its model."""
    config = config or TrainConfig()
    _check(train_sets, eval_sets)
    if set(models) != set(train_sets):
        raise ValueError(f"one model per task: models for {sorted(models)}, tasks {sorted(train_sets)}.")
    eval_sets = {t: as_tokenized(ds, tokenizer, config.max_length) for t, ds in eval_sets.items()}
    result = SequenceResult(order=list(train_sets), accuracy=[], predictions=[])
    for task, train_ds in train_sets.items():
        stage = fit(models[task], tokenizer, train_ds, None, config)
        result.losses.append(stage.losses)
        result.train_time += stage.train_time
        acc, preds = _score_all(models, tokenizer, eval_sets, config)
        result.accuracy.append(acc)
        result.predictions.append(preds)
    return result


def backward_transfer(matrix) -> float:
    """Backward transfer (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning", §4):
    BWT = 1/(T-1) · sum over j < T-1 of (R[T-1][j] − R[j][j]), with R[i][j] the accuracy on task j after training
    stage i (tasks in training order). The mean change on every EARLIER task between right after learning it and
    the end: negative is forgetting, positive is later tasks helping. The last task has no "later" and is left out.
    Works on lists or arrays; (..., T, T) gives one BWT per leading index (e.g. one per seed)."""
    import numpy as np

    R = np.asarray(matrix, dtype=float)
    if R.ndim < 2 or R.shape[-1] != R.shape[-2] or R.shape[-1] < 2:
        raise ValueError(f"backward_transfer needs a square accuracy matrix R[stage][task] of at least 2 tasks "
                         f"(one row per training stage, one column per task, same order), got shape {R.shape}.")
    T = R.shape[-1]
    own = np.diagonal(R, axis1=-2, axis2=-1)[..., :T - 1]          # (..., T-1) R[j][j]: right after learning j
    last = R[..., T - 1, :T - 1]                                     # (..., T-1) R[T-1][j]: at the end
    out = (last - own).mean(-1)
    return float(out) if out.ndim == 0 else out


def _check(train_sets: dict, eval_sets: dict) -> None:
    if not train_sets:
        raise ValueError("give at least one task: {name: training set}.")
    if set(train_sets) != set(eval_sets):
        raise ValueError(f"every task needs a training and an evaluation set: training {sorted(train_sets)}, "
                         f"evaluation {sorted(eval_sets)}.")
