"""Chapter 09's harness: what a method costs besides its accuracy, measured the same way for every method.

    model, result = chapter.run(encoder, tok, train, val, mp.LoRAConfig(r=8), cfg)
    row = compare.costs("lora r=8", model, result, batch)       # one row of the chapter's Pareto table
    row.trainable_pct, row.adapter_bytes, row.latency_ms, row.merged
    pareto_front({"lora": (0.81, 0.3), "full": (0.83, 100.0), "worse": (0.80, 1.0)})   # ['lora', 'full']

What each number is, and why it is measured this way:

    trainable      parameters the optimiser updates (the head included: every method trains a fresh one)
    train_seconds  seconds in the training loop (fit's, evaluation excluded); its examples/s makes runs of
                   different lengths comparable
    peak_rss_mb    the process's highest resident memory while training (what the laptop must have; it includes
                   the frozen model and everything already loaded, so compare methods within one session)
    optimizer_mb   the memory training adds per trainable parameter, computed: its gradient and Adam's two moments
                   (3 × 4 bytes in float32); full fine-tuning pays it for every weight
    adapter_bytes  what one more task costs on disk: the files save_adapter writes (configs included); for a
                   baseline that is not a minipeft method (head only, full fine-tuning) the bytes of its trained
                   parameters, as a checkpoint of them would hold
    latency_ms     the median time of one forward pass on `batch` (no gradients, repeats after one warm-up), on a
                   merged copy where the method merges (LoRA, IA3, ...: no added latency), else with its layers in
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.checkpoint import save_adapter
from ..core.inject import merge, peft_layers
from ..core.layers import PeftModule
from . import stats

BYTES_PER_TRAINABLE = 3 * 4  # a float32 gradient and Adam's two moments (exp_avg, exp_avg_sq) per parameter


@dataclass
class Costs:
    name: str
    accuracy: float | None
    trainable: int
    total: int
    train_seconds: float
    examples_per_s: float
    peak_rss_mb: float
    optimizer_mb: float
    adapter_bytes: int
    latency_ms: float
    merged: bool                   # latency measured on a merged copy

    @property
    def trainable_pct(self) -> float:
        return 100 * self.trainable / self.total

    def row(self) -> dict:
        return dict(asdict(self), trainable_pct=round(self.trainable_pct, 4))


def adapter_bytes(model: nn.Module) -> int:
    """Bytes one more task costs on disk: save_adapter's files, or (no minipeft method) the trained parameters."""
    if getattr(model, "minipeft_configs", None):
        with tempfile.TemporaryDirectory() as tmp:
            save_adapter(model, tmp)
            return sum(f.stat().st_size for f in Path(tmp).iterdir())
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def mergeable(model: nn.Module) -> bool:
    """Every PEFT module of the model can fold into its base weights (and there is at least one)."""
    modules = [m for m in model.modules() if isinstance(m, PeftModule)]
    return bool(peft_layers(model)) and all(getattr(m, "mergeable", False) for m in modules)


@torch.no_grad()
def latency_ms(model: nn.Module, batch: dict, repeats: int = 10, merged: bool | None = None) -> tuple[float, bool]:
    """(median milliseconds per forward pass on `batch`, whether it ran merged). merged=None: merged where the
    method merges (a merged copy: the model itself is not changed)."""
    merged = mergeable(model) if merged is None else merged
    timed = merge(copy.deepcopy(model)) if merged else model
    was_training = timed.training
    timed.eval()
    timed(**batch)                                               # warm-up: first-call allocations, lazy inits
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        timed(**batch)
        times.append(time.perf_counter() - start)
    timed.train(was_training)
    return 1000 * statistics.median(times), merged


def costs(name: str, model: nn.Module, result, batch: dict, repeats: int = 10) -> Costs:
    """One row of the comparison: `result` is fit's TrainResult for `model`, `batch` the inputs latency is timed on."""
    ms, merged = latency_ms(model, batch, repeats)
    return Costs(name=name, accuracy=result.accuracy, trainable=result.trainable, total=result.total,
                 train_seconds=result.train_time, examples_per_s=result.examples_per_s,
                 peak_rss_mb=result.peak_rss_mb, optimizer_mb=result.trainable * BYTES_PER_TRAINABLE / 2**20,
                 adapter_bytes=adapter_bytes(model), latency_ms=ms, merged=merged)


def pareto_front(points: dict[str, tuple[float, float]], maximise: tuple[bool, bool] = (True, False)) -> list[str]:
    """The names no other point dominates: none is at least as good on both axes and strictly better on one.

    points: name -> (x, y); maximise says, per axis, whether larger is better (default: accuracy up, cost down).
    The front is what a choice should be made from: every other method is beaten on both counts by one on it."""
    if len(maximise) != 2:
        raise ValueError(f"maximise says for each of the two axes whether larger is better, got {maximise!r}.")
    sign = [1 if m else -1 for m in maximise]

    def better_or_equal(p, q):   # p is at least as good as q on both axes
        return all(s * a >= s * b for s, a, b in zip(sign, p, q))

    return [name for name, p in points.items()
            if not any(better_or_equal(q, p) and tuple(q) != tuple(p) for other, q in points.items() if other != name)]


# --- learning-rate sensitivity (chapter 09 measures it; chapter 12 reads it back as one of the notes' challenges) ---

LR_FACTORS = (0.1, 10.0)   # the sweep's rates relative to each method's own (grid 09_choosing, experiment "learning rate")


def lr_config_name(method: str, factor: float) -> str:
    """The grid's name of `method` run at `factor` × its own learning rate ("lora qv r=8 lr x0.1")."""
    return f"{method} lr x{factor:g}"


@dataclass
class LRShift:
    """One method at one learning rate ten times off: the run's accuracy, and its paired shift from the method's own
    rate on the same seed (0). `real` asks for both: the interval excludes 0 AND the shift exceeds the method's seed
    range at its own rate — one seed per rate, so the seeds' spread is the yardstick of noise."""
    factor: float
    accuracy: float
    low: float            # Wilson 95 % of that accuracy (test-set sampling)
    high: float
    shift: float          # paired accuracy difference to the method's own rate, seed 0
    shift_low: float
    shift_high: float
    real: bool


@dataclass
class LRSensitivity:
    method: str
    lr: float             # the method's own rate (its chapter's)
    seed0: float          # accuracy at that rate, seed 0
    seed_range: float     # max − min accuracy over the method's seeds at that rate
    shifts: dict          # factor -> LRShift, only for the runs that exist

    def worst(self) -> LRShift | None:
        return min(self.shifts.values(), key=lambda s: s.shift, default=None)


def lr_sensitivity(ref, factors=LR_FACTORS) -> list[LRSensitivity]:
    """Every method of `ref` (a loaded 09_choosing Reference) that has a learning-rate sweep, with each existing run
    paired to the method's own seed-0 run. A run not finished yet is missing from `shifts`, never guessed."""
    names = {c.name for c in ref.grid.configs}
    out = []
    for config in ref.grid.configs:
        method = config.name
        if config.experiment == "learning rate" or not any(lr_config_name(method, f) in names for f in factors):
            continue
        own = ref.accuracies(method)                             # (seeds,) at the method's own rate
        if not len(own):
            continue
        seed0 = [i for i, r in enumerate(ref.runs(method)) if r["seed"] == 0]
        if not seed0:
            continue
        spread = float(own.max() - own.min())
        shifts = {}
        for factor in factors:
            other = lr_config_name(method, factor)
            if other not in names or not ref.runs(other):
                continue
            a = ref.correct(other)                               # (1, examples): its one seed-0 run
            b = ref.correct(method)[seed0]                       # (1, examples): the method's own rate, seed 0
            paired = stats.paired_bootstrap(a, b)
            low, high = stats.binomial_interval(float(a.mean()), a.shape[1])
            shifts[factor] = LRShift(factor, float(a.mean()), low, high, paired.diff, paired.low, paired.high,
                                     bool((paired.low > 0 or paired.high < 0) and abs(paired.diff) > spread))
        out.append(LRSensitivity(method, config.settings()["lr"], float(own[seed0[0]]), spread, shifts))
    return out


def plot_lr_sensitivity(ax, rows: list[LRSensitivity], majority: float | None = None, colours: dict | None = None):
    """Accuracy against the learning rate relative to each method's own (log axis), one line per method, shaded by
    ± its seed range at its own rate; the legend outside the axes on the right (no point hidden behind it)."""
    for i, row in enumerate(rows):
        colour = (colours or {}).get(row.method, f"C{i % 10}")
        points = sorted([(1.0, row.seed0)] + [(f, row.seed0 + s.shift) for f, s in row.shifts.items()])
        ax.plot(*zip(*points), "o-", c=colour, label=row.method)
        ax.fill_between([0.8, 1.25], row.seed0 - row.seed_range, row.seed0 + row.seed_range, color=colour,
                        alpha=0.15, lw=0)
    if majority is not None:
        ax.axhline(majority, ls=":", c="k", lw=0.8, label=f"majority class ({majority:.3f})")
    ax.set(xscale="log", xticks=[0.1, 1, 10], xticklabels=["× 0.1", "its chapter's lr", "× 10"],
           xlabel="learning rate, relative to the one each chapter used", ylabel="test accuracy (seed 0)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
