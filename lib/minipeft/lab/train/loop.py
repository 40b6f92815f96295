"""A short, readable training loop (not HF Trainer): AdamW + linear warm-up + linear decay, a tqdm progress bar.

    result = fit(model, tokenizer, data["train"], data["validation"], TrainConfig(epochs=1, lr=3e-4))
    result.accuracy, result.train_time, result.examples_per_s, result.peak_rss_mb

Same seed -> same numbers: the seed fixes the shuffling and dropout (and, with minipeft.lab.chapter, the head's
initialisation). Hooks, for the methods that need them:
    extra_loss(model)        added to the loss (AdaLoRA's orthogonality penalty)
    after_step(model, step)  after each optimizer step, before the gradients are cleared (AdaLoRA's allocator)
    schedule                 the order of batches: by default shuffled epochs over one training set (``Epochs``);
                             the multitask prompt passes a round-robin over its tasks (minipeft.methods.mpt)
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn

from ...core.checks import check_int, check_positive
from ...core.params import trainable_parameters
from ..data import EncoderCollate, tokenize
from .memory import PeakRSS


# --------------------------------------------------------------------------------------------- config + result
@dataclass
class TrainConfig:
    epochs: float = 1.0          # fractional epochs are allowed (0.5 = half the data once)
    lr: float = 5e-4             # PEFT methods like ~1e-4..1e-2; full fine-tuning wants ~5e-5
    batch_size: int = 32         # fits a 2-core laptop; bigger batches barely speed up CPU training
    weight_decay: float = 0.01   # AdamW's decoupled decay, BERT's usual value
    warmup_ratio: float = 0.06   # linear warm-up over the first 6% of steps (RoBERTa's recipe)
    max_length: int = 64         # 99.9% of Rotten Tomatoes snippets fit in 64 MiniLM tokens
    max_steps: int | None = None  # stop early after this many optimizer steps (quick mode)
    grad_clip: float | None = 1.0
    seed: int = 0
    eval_batch_size: int = 128
    eval_every: int | None = None  # also evaluate every k steps (for learning curves); None = only at the end
    progress: bool = True        # tqdm bar; off in tests
    device: str | None = None    # None -> "cuda" if available, else "cpu"
    desc: str = "train"          # the progress bar's label

    def __post_init__(self):
        # a bad value fails here, with the fix, not as a hang (batch_size=-1), a ZeroDivisionError (0) or one silent
        # step (epochs=0); numpy integers are fine and stored as Python ints
        for name in ("batch_size", "eval_batch_size", "max_length", "max_steps", "eval_every", "seed"):
            value = getattr(self, name)
            if value is None and name in ("max_steps", "eval_every"):
                continue
            least = {"seed": 0, "max_length": 2}.get(name, 1)
            check_int(value, f"TrainConfig.{name}", {"max_length": "max_length=64", "seed": "seed=0"}.get(
                name, f"{name}=32"), minimum=least)
            setattr(self, name, int(value))
        check_positive(self.epochs, "TrainConfig.epochs", "epochs=1 (or 0.5 for half the data)")
        check_positive(self.lr, "TrainConfig.lr", "lr=1e-3 for LoRA, 5e-5 for full fine-tuning")
        check_positive(self.weight_decay, "TrainConfig.weight_decay", "weight_decay=0.01", allow_zero=True)
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio < 1):
            raise ValueError(f"TrainConfig.warmup_ratio is a share of the steps in [0, 1) (e.g. 0.06), got "
                             f"{self.warmup_ratio!r}.")
        if self.grad_clip is not None:
            check_positive(self.grad_clip, "TrainConfig.grad_clip", "grad_clip=1.0, or None for no clipping")


@dataclass
class TrainResult:
    accuracy: float | None                # on the evaluation set, after training (None: no evaluation set)
    losses: list[float]                   # training loss per step
    eval_history: list[tuple[int, float]]  # (step, accuracy) when eval_every is set, plus the final one
    steps: int
    examples: int
    train_time: float                     # seconds in the training loop (evaluation excluded)
    examples_per_s: float
    peak_rss_mb: float                    # highest resident memory of this process while training (CPU)
    peak_gpu_mb: float | None             # torch.cuda.max_memory_allocated while training, on a GPU
    trainable: int
    total: int
    steps_per_epoch: int
    predictions: list[int] | None = None  # the final prediction for every evaluation row, in the dataset's order

    @property
    def s_per_epoch(self) -> float:
        """Training seconds one full pass over the training set takes (extrapolated from the steps run)."""
        return self.train_time * self.steps_per_epoch / max(self.steps, 1)

    def row(self) -> dict:
        """A flat dict, handy for a results table."""
        return dict(accuracy=None if self.accuracy is None else round(self.accuracy, 4), trainable=self.trainable,
                    trainable_pct=round(100 * self.trainable / self.total, 4), train_s=round(self.train_time, 1),
                    ex_per_s=round(self.examples_per_s, 1), peak_rss_mb=round(self.peak_rss_mb))


# --------------------------------------------------------------------------------------------- data
def device_for(config: TrainConfig) -> torch.device:
    """config.device, or the GPU when there is one."""
    return torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def as_tokenized(ds, tokenizer, max_length):
    """A dataset with input_ids: tokenised here unless it already is (tokenise once, reuse across runs)."""
    return tokenize(ds, tokenizer, max_length) if "input_ids" not in ds.column_names else ds


def eval_batches(ds, tokenizer, batch_size: int = 128, max_length: int = 64):
    """(rows, batch) over a (raw or tokenised) dataset: its rows in batches of similar length (less padding), each
    batch collated as the model takes it, without labels; ``rows`` are the batch's indices in ``ds``."""
    ds = as_tokenized(ds, tokenizer, max_length)
    lengths = [len(ids) for ids in ds["input_ids"]]
    order = sorted(range(len(ds)), key=lambda i: lengths[i])    # similar lengths -> less padding
    collate = EncoderCollate(tokenizer)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = collate([ds[i] for i in rows])
        batch.pop("labels", None)
        yield rows, batch


@torch.inference_mode()
def predict(model: nn.Module, tokenizer, ds, batch_size: int = 128, max_length: int = 64,
            device: str | torch.device | None = None) -> list[int]:
    """The predicted label of every row of a (raw or tokenised) dataset, in the dataset's order.

    Rows are scored in batches of similar length (less padding) under inference_mode (no autograd bookkeeping at
    all): the same predictions as a plain no_grad loop, faster."""
    device = torch.device(device or next(model.parameters()).device)
    was_training = model.training
    model.eval()
    predictions = [0] * len(ds)
    for rows, batch in eval_batches(ds, tokenizer, batch_size, max_length):
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits  # (B, C)
        for i, p in zip(rows, logits.argmax(-1).tolist()):
            predictions[i] = p
    model.train(was_training)
    return predictions


def accuracy(predictions, labels) -> float:
    """The share of predictions equal to their label (0.0 for an empty set)."""
    labels = list(labels)
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels.")
    return sum(p == y for p, y in zip(predictions, labels)) / max(len(labels), 1)


def evaluate(model: nn.Module, tokenizer, ds, batch_size: int = 128, max_length: int = 64,
             device: str | torch.device | None = None) -> float:
    """Accuracy of a classifier on a (raw or tokenised) dataset with a 'label' column."""
    return accuracy(predict(model, tokenizer, ds, batch_size, max_length, device), ds["label"])


def length_grouped_batches(lengths: list[int], batch_size: int, gen: torch.Generator, group: int = 50):
    """Shuffled batches of similar-length examples (HF Trainer's ``group_by_length``): shuffle, cut into groups of
    ``group`` batches, sort each group by length, batch it, shuffle the batches. Less padding -> ~1.5x faster on CPU."""
    order = torch.randperm(len(lengths), generator=gen).tolist()
    batches = []
    for g in range(0, len(order), group * batch_size):
        chunk = sorted(order[g:g + group * batch_size], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def make_optimizer(model: nn.Module, config: TrainConfig, total_steps: int):
    """AdamW on the trainable parameters (no decay on biases and norms) + linear warm-up/decay schedule."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("No trainable parameters: inject a method (minipeft.inject) or unfreeze something first.")
    decay = [p for n, p in params if p.ndim >= 2]
    no_decay = [p for n, p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    warmup = int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def planned_steps(train_size: int, config: TrainConfig) -> int:
    """The optimizer steps ``fit`` takes on ``train_size`` examples with ``config`` (epochs, batch size, max_steps):
    what a method whose schedule depends on the run's length (AdaLoRA's budget) must know before training."""
    steps = max(1, math.ceil(config.epochs * math.ceil(train_size / config.batch_size)))
    return steps if config.max_steps is None else min(steps, config.max_steps)


class Epochs:
    """The default schedule: shuffled passes over one (tokenised) training set, similar lengths batched together.

    A schedule says how many steps ``epochs`` passes take and, given the run's random generator, yields
    (dataset, row indices, context) for every step; the loop runs the forward pass inside the context.
    """

    def __init__(self, train, batch_size: int):
        self.train, self.batch_size = train, batch_size
        self.lengths = [len(ids) for ids in train["input_ids"]]
        self.steps_per_epoch = math.ceil(len(train) / batch_size)

    def steps(self, epochs: float) -> int:
        return planned_steps(len(self.train), TrainConfig(epochs=epochs, batch_size=self.batch_size))

    def __call__(self, gen: torch.Generator) -> Iterator[tuple[object, list[int], ContextManager]]:
        while True:  # a new shuffle every epoch
            for rows in length_grouped_batches(self.lengths, self.batch_size, gen):
                yield self.train, rows, nullcontext()


# --------------------------------------------------------------------------------------------- loop
def _require_labels(ds, what: str) -> None:
    columns = getattr(ds, "column_names", None)
    if columns is not None and "label" not in columns:
        raise ValueError(f"The {what} set has no 'label' column (its columns: {columns}): a classifier needs one label "
                         "per row. Rename yours, e.g. ds.rename_column(\"labels\", \"label\").")


def fit(model: nn.Module, tokenizer, train_ds, eval_ds, config: TrainConfig | None = None, *,
        extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
        after_step: Callable[[nn.Module, int], None] | None = None, schedule=None) -> TrainResult:
    """Train ``model`` (a classifier returning .loss/.logits) on ``train_ds``; report accuracy on ``eval_ds``.

    ``extra_loss(model)`` is added to the loss (e.g. AdaLoRA's orthogonality penalty); ``after_step(model, step)``
    runs after each optimizer step, before the gradients are cleared (e.g. AdaLoRA's budget allocation).
    ``schedule`` replaces the default batch order (then ``train_ds`` is None); ``eval_ds=None`` skips evaluation.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    if schedule is None:
        if train_ds is None or len(train_ds) == 0:
            raise ValueError("The training set is empty.")
        _require_labels(train_ds, "training")
        schedule = Epochs(as_tokenized(train_ds, tokenizer, config.max_length), config.batch_size)
    elif train_ds is not None:
        raise ValueError("Pass either train_ds or a schedule (which holds its own training data), not both.")
    device = device_for(config)
    model.to(device)
    collate = EncoderCollate(tokenizer)
    total_steps = schedule.steps(config.epochs)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    if eval_ds is not None:
        if len(eval_ds) == 0:
            raise ValueError("The evaluation set is empty: its accuracy would be meaningless. Pass eval_ds=None to "
                             "train without evaluating.")
        _require_labels(eval_ds, "evaluation")
        eval_ds = as_tokenized(eval_ds, tokenizer, config.max_length)   # tokenised once for every evaluation
    predictions: list[int] | None = None

    def score() -> float | None:
        nonlocal predictions
        if eval_ds is None:
            return None
        predictions = predict(model, tokenizer, eval_ds, config.eval_batch_size, config.max_length, device)
        return accuracy(predictions, eval_ds["label"])

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    optimizer, scheduler = make_optimizer(model, config, total_steps)
    losses, history, seen = [], [], 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model.train()
    bar = tqdm(total=total_steps, desc=config.desc, disable=not config.progress, leave=False)
    with PeakRSS() as mem:
        start, eval_time = time.perf_counter(), 0.0
        for step, (data, rows, context) in enumerate(islice(schedule(gen), total_steps)):
            batch = {k: v.to(device) for k, v in collate([data[j] for j in rows]).items()}
            with context:
                loss = model(**batch).loss
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            if not torch.isfinite(loss):                                 # before backward: the weights stay finite
                bar.close()
                raise FloatingPointError(
                    f"The training loss is {loss.item()} at step {step + 1} of {total_steps}: training stopped, the "
                    f"model keeps the weights of step {step}. Likely causes: a learning rate too high (lr="
                    f"{config.lr:g}), a batch whose labels are all -100 (ignored: nothing to average), or NaN/inf "
                    "in a method's hyper-parameters or in the inputs.")
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                after_step(model, step)
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            seen += len(batch["labels"])
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < total_steps:
                t0 = time.perf_counter()
                history.append((step + 1, score()))
                eval_time += time.perf_counter() - t0
        train_time = time.perf_counter() - start - eval_time
    bar.close()
    final = score()
    history.append((len(losses), final))
    trainable, total = trainable_parameters(model)
    return TrainResult(
        accuracy=final, losses=losses, eval_history=history, steps=len(losses), examples=seen,
        train_time=train_time, examples_per_s=seen / max(train_time, 1e-9), peak_rss_mb=mem.peak,
        peak_gpu_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        trainable=trainable, total=total, steps_per_epoch=schedule.steps(1.0), predictions=predictions,
    )
