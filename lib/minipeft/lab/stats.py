"""How sure are we? Intervals over seeds, paired comparisons on the test predictions, and the words of a verdict.

    mean_interval([0.81, 0.83, 0.80])                  # (mean, low, high): Student t, 95 %, over seeds
    paired_bootstrap(correct_a, correct_b)             # A - B with a 95 % interval and a p-value
    mcnemar(correct_a, correct_b)                      # exact McNemar p-value for one pair of runs
    verdict(diff, low, high, claim="greater")          # "reproduces" / "opposite" / "not significant at this scale"
    bold("reproduces")                                 # the words as a notebook shows them: **reproduces**

``correct_*`` are 0/1 arrays of shape (seeds, examples): run s of A and run s of B share the seed (so the head's
initialisation and the data order) and the test set, which is what makes the comparison *paired*: the noise both
runs share cancels, and a difference far smaller than either interval can be significant.

Why not just compare the two means with their intervals? Two overlapping 95 % intervals can still hide a clear
difference (their widths add, the paired difference's do not), and a single test set of 1,276 snippets has its own
sampling error (≈ 0.012 at 80 % accuracy) that every configuration shares.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
CLAIMS = ("greater", "similar")
WORDS = ("reproduces", "opposite", "not significant at this scale")
# Words that mean the numbers cannot carry a verdict: a run that did not learn (Reference.compare), too few timing
# passes to tell a few per cent from noise (quick mode), a machine too busy to time on.
NO_VERDICT = ("did not learn", "too few passes", "busy machine")


# --------------------------------------------------------------------------------------------- intervals over seeds
def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (bisection on its CDF; no scipy needed)."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}.")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:  # 1/2 + integral of the density from 0 to x (Simpson, 4,000 panels)
        u = np.linspace(0.0, x, 4001)
        f = np.exp(log_c - (df + 1) / 2 * np.log1p(u * u / df))
        return 0.5 + (u[1] - u[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of a few numbers (one per seed): the Student-t interval for their mean.

    With 3 seeds the t factor is 4.30 (not 1.96): three runs say little about the spread, and the interval is honest
    about it. One value: the interval is unknown, (v, -inf, inf)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_interval needs at least one value.")
    mean = float(x.mean())
    if x.size == 1:
        return mean, -math.inf, math.inf
    half = t_quantile(0.5 + level / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def binomial_interval(accuracy: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson interval of an accuracy measured on ``n`` examples (one run: test-set sampling error only)."""
    if n <= 0:
        raise ValueError("binomial_interval needs n > 0.")
    z = _normal_quantile(0.5 + level / 2)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def proportion_difference(k_a: int, n_a: int, k_b: int, n_b: int, level: float = LEVEL
                          ) -> tuple[float, float, float]:
    """(p_a − p_b, low, high) for two shares measured on independent samples (k of n each: e.g. the share of an
    adapter's generations a judge calls positive, against the base model's): Newcombe's hybrid score interval, built
    from each share's Wilson interval (Newcombe 1998, method 10). It stays inside [−1, 1] and is honest for small n,
    where the plain p ± 1.96 · se is too narrow."""
    if not (0 <= k_a <= n_a and 0 <= k_b <= n_b and n_a > 0 and n_b > 0):
        raise ValueError(f"need 0 <= k <= n and n > 0 for both samples, got {k_a}/{n_a} and {k_b}/{n_b}.")
    p_a, p_b = k_a / n_a, k_b / n_b
    (lo_a, hi_a), (lo_b, hi_b) = binomial_interval(p_a, n_a, level), binomial_interval(p_b, n_b, level)
    d = p_a - p_b
    low = d - math.sqrt((p_a - lo_a) ** 2 + (hi_b - p_b) ** 2)
    high = d + math.sqrt((hi_a - p_a) ** 2 + (p_b - lo_b) ** 2)
    return d, low, high


def _normal_quantile(p: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * math.erfc(-mid / math.sqrt(2)) < p else (lo, mid)
    return (lo + hi) / 2


# --------------------------------------------------------------------------------------------- paired tests
@dataclass
class Paired:
    """A - B in accuracy, averaged over the shared seeds, with its interval and two-sided p-value."""
    diff: float
    low: float
    high: float
    p: float
    seeds: int
    examples: int

    def __str__(self) -> str:
        return f"{self.diff:+.3f} [{self.low:+.3f}, {self.high:+.3f}], p = {format_p(self.p)}"


def _as_matrix(correct, what: str) -> np.ndarray:
    x = np.asarray(correct)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{what} must be a 0/1 array of shape (seeds, examples), got shape {np.shape(correct)}.")
    if not np.isin(x, (0, 1)).all():
        raise ValueError(f"{what} must hold 0/1 (wrong/right) per example.")
    return x.astype(np.int8)


def paired_bootstrap(correct_a, correct_b, n_boot: int = 4000, level: float = LEVEL, seed: int = 0) -> Paired:
    """Two-level paired bootstrap of mean accuracy A - B.

    Each replicate redraws the seeds (pairs stay pairs: A's run s against B's run s) and the test examples (the same
    draw for both), so the interval covers both training randomness and test-set sampling. The p-value is the share
    of replicates, centred on the observed difference, at least as far from it as zero is (two-sided)."""
    a, b = _as_matrix(correct_a, "correct_a"), _as_matrix(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"A and B must have the same seeds and examples, got {a.shape} and {b.shape}.")
    seeds, n = a.shape
    d = (a - b).astype(np.float64)                                        # (S, N) per-example difference
    w_seed, w_ex = _bootstrap_weights(seeds, n, n_boot, seed)
    # (B,) = Σ_s w_seed[b, s] Σ_n w_ex[b, n] d[s, n]: the inner sums are whole numbers below 2^24, exact in float32
    boot = (w_seed * (w_ex @ d.T.astype(w_ex.dtype))).sum(1) / (seeds * n)
    diff = float(d.mean())
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    p = float(np.mean(np.abs(boot - diff) >= abs(diff))) if diff != 0 else 1.0
    return Paired(diff, float(low), float(high), max(p, 1 / n_boot), seeds, n)


@functools.lru_cache(maxsize=6)
def _bootstrap_weights(seeds: int, n: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(w_seed (B, S), w_ex (B, N)): how often each seed and each example is drawn in each replicate. They depend on
    the shapes and the seed only, so every comparison on one test set shares them: drawn once (the multinomial over
    N examples is most of a comparison's time; chapter 09 makes dozens on three VADER domains). w_ex is kept in
    float32 (exact: whole counts), so each comparison is one float32 matrix product."""
    rng = np.random.default_rng(seed)
    w_seed = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=n_boot)
    w_ex = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
    return w_seed, w_ex.astype(np.float32 if n < 2**24 else np.float64)


def mcnemar(correct_a, correct_b) -> float:
    """Exact McNemar p-value (two-sided) for one pair of runs on the same examples: only the examples exactly one of
    them gets right count; under 'no difference' each is A's with probability 1/2."""
    a, b = (np.asarray(x).astype(bool).ravel() for x in (correct_a, correct_b))
    if a.shape != b.shape:
        raise ValueError(f"A and B must score the same examples, got {a.shape} and {b.shape}.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def format_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


# --------------------------------------------------------------------------------------------- verdicts
def verdict(diff: float, low: float, high: float, claim: str = "greater", margin: float = 0.01) -> str:
    """The words for a paper's claim about A vs B, chosen by the interval of A - B:

    claim="greater" (the paper: A beats B)   low > 0: reproduces | high < 0: opposite | else: not significant
    claim="similar" (the paper: A ≈ B)       the whole interval within ±margin: reproduces
                                             the whole interval beyond ±margin: opposite (a real difference)
                                             else: not significant at this scale (too wide to tell)"""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}.")
    if not low <= diff <= high:
        raise ValueError(f"the interval [{low}, {high}] must contain the difference {diff}.")
    if claim == "greater":
        return WORDS[0] if low > 0 else WORDS[1] if high < 0 else WORDS[2]
    if margin <= 0:
        raise ValueError("margin must be > 0 for a 'similar' claim.")
    if -margin < low and high < margin:
        return WORDS[0]
    if low >= margin or high <= -margin:
        return WORDS[1]
    return WORDS[2]


def bold(words: str) -> str:
    """The verdict words as a chapter's Markdown shows them: **reproduces**, **the opposite**, ... and **no verdict**
    for any of ``NO_VERDICT`` (a claim is never read off a run that did not learn)."""
    if words in NO_VERDICT:
        return "**no verdict**"
    if words not in WORDS:
        raise ValueError(f"unknown verdict words {words!r}; expected one of {WORDS + NO_VERDICT}.")
    return "**the opposite**" if words == "opposite" else f"**{words}**"


def reason(diff: float, low: float, high: float, claim: str = "greater", margin: float = 0.01) -> str:
    """Why ``verdict`` chose its words, in a phrase a student can read."""
    words = verdict(diff, low, high, claim, margin)
    if claim == "greater":
        return {WORDS[0]: "the whole interval is above 0", WORDS[1]: "the whole interval is below 0",
                WORDS[2]: "the interval contains 0"}[words]
    band = f"±{margin:.3f}"
    if words == WORDS[0]:
        return f"the whole interval lies within {band}"
    if words == WORDS[1]:
        return f"the whole interval lies beyond {band}: a real difference, larger than the claim allows"
    if low > 0 or high < 0:
        return f"a difference is detected (the interval excludes 0), but it may still be smaller than {band}"
    return f"the interval contains 0 but is wider than {band}"


def learned(accuracies, majority: float, examples: int | None = None, level: float = LEVEL) -> bool:
    """Did these runs learn? Their accuracy is above the majority class by more than its interval: the interval over
    seeds for several runs, the test-set (Wilson) interval on ``examples`` snippets for a single run."""
    values = np.atleast_1d(np.asarray(accuracies, dtype=float))
    if values.size == 1:
        if examples is None:
            raise ValueError("learned() on a single run needs examples= (the size of its evaluation set).")
        return binomial_interval(float(values[0]), examples, level)[0] > majority
    return mean_interval(values, level)[1] > majority
