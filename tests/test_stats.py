"""minipeft.lab.stats: the numbers behind every error bar and verdict, checked against known values."""

import math

import numpy as np
import pytest

from minipeft.lab import stats


@pytest.mark.parametrize("df, expected", [(1, 12.706205), (2, 4.302653), (4, 2.776445), (30, 2.042272)])
def test_t_quantile_matches_the_tables(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)


def test_mean_interval_is_the_student_t_interval():
    mean, low, high = stats.mean_interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82)
    assert high - mean == pytest.approx(4.302653 * 0.02 / math.sqrt(3), abs=1e-6)   # sd 0.02, n 3
    assert stats.mean_interval([0.7]) == (0.7, -math.inf, math.inf)
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_interval([])


def test_binomial_interval_is_wilson():
    low, high = stats.binomial_interval(0.8, 1276)
    assert (low, high) == pytest.approx((0.7772, 0.8210), abs=1e-4)        # Wilson 95 %, by hand
    with pytest.raises(ValueError):
        stats.binomial_interval(0.5, 0)


def test_paired_bootstrap_sees_a_small_difference_the_means_hide():
    rng = np.random.default_rng(0)
    b = (rng.random((3, 1276)) < 0.80).astype(int)
    a = b.copy()
    for s in range(3):                                         # A fixes 15 of B's ~255 errors in every seed
        a[s, rng.choice(np.flatnonzero(b[s] == 0), 15, replace=False)] = 1
    paired = stats.paired_bootstrap(a, b)
    assert paired.diff == pytest.approx(15 / 1276)             # +1.2 points: inside either run's own ±2.2 points
    assert stats.binomial_interval(b[0].mean(), 1276)[1] > a[0].mean()
    assert paired.low > 0 and paired.p < 0.01                  # paired: clearly better
    diff = a.mean() - b.mean()
    assert paired.diff == pytest.approx(diff)
    assert stats.paired_bootstrap(b, b).diff == 0 and stats.paired_bootstrap(b, b).p == 1.0


def test_paired_bootstrap_shares_its_draws_across_comparisons_and_gives_the_uncached_numbers():
    rng = np.random.default_rng(3)
    a, b = (rng.random((3, 500)) < 0.8).astype(int), (rng.random((3, 500)) < 0.78).astype(int)
    draw = np.random.default_rng(0)                          # what the bootstrap drew before the cache, by hand
    w_seed = draw.multinomial(3, np.full(3, 1 / 3), size=4000)
    w_ex = draw.multinomial(500, np.full(500, 1 / 500), size=4000)
    boot = np.einsum("bs,sn,bn->b", w_seed, (a - b).astype(float), w_ex) / 1500
    low, high = np.quantile(boot, [0.025, 0.975])
    for _ in range(2):                                       # drawn, then read from the cache: the same numbers
        p = stats.paired_bootstrap(a, b)
        assert (p.low, p.high) == (float(low), float(high))
    assert stats.paired_bootstrap(a, b, seed=1).low != p.low   # another seed, other draws


def test_paired_bootstrap_refuses_unpaired_or_non_binary_input():
    with pytest.raises(ValueError, match="same seeds and examples"):
        stats.paired_bootstrap(np.ones((3, 10)), np.ones((2, 10)))
    with pytest.raises(ValueError, match="0/1"):
        stats.paired_bootstrap(np.full((1, 4), 0.5), np.ones((1, 4)))


def test_mcnemar_exact():
    a = np.array([1] * 10 + [0] * 0 + [1] * 50)
    b = np.array([0] * 10 + [1] * 50)
    # discordant: 10 where only A is right, 0 where only B is right -> p = 2 / 2**10
    assert stats.mcnemar(a[:10], b[:10]) == pytest.approx(2 / 2 ** 10)
    assert stats.mcnemar(np.ones(5), np.ones(5)) == 1.0


@pytest.mark.parametrize("diff, low, high, claim, words", [
    (0.03, 0.01, 0.05, "greater", "reproduces"),
    (-0.03, -0.05, -0.01, "greater", "opposite"),
    (0.01, -0.01, 0.03, "greater", "not significant at this scale"),
    (0.001, -0.005, 0.006, "similar", "reproduces"),
    (0.04, 0.02, 0.06, "similar", "opposite"),
    (0.005, -0.008, 0.018, "similar", "not significant at this scale"),
])
def test_verdict_words_follow_the_interval(diff, low, high, claim, words):
    assert stats.verdict(diff, low, high, claim, margin=0.01) == words


def test_verdict_refuses_nonsense():
    with pytest.raises(ValueError, match="claim"):
        stats.verdict(0, -1, 1, "bigger")
    with pytest.raises(ValueError, match="contain"):
        stats.verdict(0.5, -0.1, 0.1)


def test_learned_needs_the_interval_above_the_majority_class():
    assert stats.learned([0.80, 0.81, 0.82], majority=0.5)
    assert not stats.learned([0.52, 0.50, 0.60], majority=0.516)      # mean above, interval not
    assert stats.learned(0.75, majority=0.5, examples=300)
    assert not stats.learned(0.53, majority=0.516, examples=64)        # one small run: within the noise
    with pytest.raises(ValueError, match="examples"):
        stats.learned(0.9, majority=0.5)


def test_timing_interleaves_and_the_words_follow_the_spread():
    from minipeft.lab import timing

    calls = []
    times = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]     # warm-up, then who goes first rotates
    assert [len(t) for t in times.values()] == [4, 4]
    same = timing.paired_ratio([10, 11, 9, 10, 12], [10, 10, 10, 11, 11])
    assert same.words("merging").startswith("no measurable difference")
    slow = timing.paired_ratio([13, 14, 12, 13, 13], [10, 10, 10, 10, 10])
    assert slow.median == pytest.approx(1.3) and "slower" in slow.words("unmerged")
    with pytest.raises(ValueError, match="same"):
        timing.paired_ratio([1, 2], [1])


def test_reason_says_what_the_interval_does():
    assert stats.reason(0.015, 0.005, 0.025, "similar", 0.01).startswith("a difference is detected")
    assert stats.reason(0.0, -0.02, 0.02, "similar", 0.01).startswith("the interval contains 0 but is wider")
    assert stats.reason(0.02, 0.01, 0.03, "greater") == "the whole interval is above 0"


def test_bold_shows_every_verdict_and_no_verdict_for_a_run_that_cannot_carry_one():
    assert [stats.bold(w) for w in stats.WORDS] == ["**reproduces**", "**the opposite**",
                                                     "**not significant at this scale**"]
    assert {stats.bold(w) for w in stats.NO_VERDICT} == {"**no verdict**"}
    with pytest.raises(ValueError, match="unknown verdict words 'reproduce'"):
        stats.bold("reproduce")                                      # a typo never prints as a verdict


def test_proportion_difference_is_newcombe_s_hybrid_score_interval():
    d, low, high = stats.proportion_difference(56, 70, 48, 80)       # Newcombe (1998), Table II, example (a)
    assert d == pytest.approx(0.2) and (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    d, low, high = stats.proportion_difference(10, 10, 0, 10)        # the extremes stay inside [-1, 1]
    assert d == 1 and 0 < low < 1 and high == pytest.approx(1)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.proportion_difference(3, 2, 1, 2)
