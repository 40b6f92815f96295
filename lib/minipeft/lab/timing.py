"""Timing that survives a busy laptop: interleave the candidates, compare them pass by pass, show the spread.

    times = interleaved({"base": lambda: base(**x), "merged": lambda: merged(**x)}, repeats=21)   # ms per pass
    ratio = paired_ratio(times["merged"], times["base"])       # median of merged/base per pass, with its quartiles
    ratio.words("merging")                                      # "no measurable overhead (…)" or "+12 % (…)"

A single timing on a shared machine is noise (another process steals a core for a few ms): one run measured +49 %
for the unmerged model and −16 % for the merged one, which is structurally the base model. Interleaving exposes every
candidate to the same noise; the per-pass ratio cancels slow phases; the quartiles say how sure the median is.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int = 21, warmup: int = 2) -> dict[str, list[float]]:
    """Milliseconds per call of each candidate, the candidates called in turn ``repeats`` times (after ``warmup``)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for i in range(repeats):
        order = list(candidates.items())
        for name, fn in order[i % len(order):] + order[:i % len(order)]:   # rotate who goes first
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


@dataclass
class Ratio:
    """other / base per pass: its median and quartiles (1.00 = the same speed)."""
    low: float
    median: float
    high: float
    repeats: int

    def words(self, what: str = "it") -> str:
        span = f"median {100 * (self.median - 1):+.0f} %, middle half of {self.repeats} passes " \
               f"{100 * (self.low - 1):+.0f} … {100 * (self.high - 1):+.0f} %"
        if self.low <= 1 <= self.high:
            return f"no measurable difference for {what} ({span})"
        return f"{what} is {'slower' if self.low > 1 else 'faster'} ({span})"


def paired_ratio(other: list[float], base: list[float]) -> Ratio:
    if len(other) != len(base) or not base:
        raise ValueError("paired_ratio needs two timing lists of the same (non-zero) length, from interleaved().")
    q1, q2, q3 = quartiles([o / b for o, b in zip(other, base)])
    return Ratio(q1, q2, q3, len(base))
