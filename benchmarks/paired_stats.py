"""The statistics of the studies over paired seeds: t intervals, TOST equivalence tests and Holm's
adjustment (results protocol §7), with Student's t from scipy.

Every function takes per-seed values as `{seed: value}` and pairs them by seed: the seed fixes the
initialization, the validation split and the data order, so each seed is one paired observation.
"""

import math
import statistics

from scipy import stats

LEVEL = 0.95  # two-sided intervals; TOST at α = 0.05 (its 90 % interval inside the margin)


def t_quantile_975(df):
    """t_{0.975, df}: the 95 % two-sided critical value of Student's t with `df` >= 1."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 pairs; got df={df}")
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def paired_differences(a, b):
    """The seeds both `a` and `b` have, sorted, and the differences `a[s] − b[s]` over them."""
    seeds = sorted(set(a) & set(b))
    return seeds, [a[s] - b[s] for s in seeds]


def paired_difference(a, b):
    """The per-seed differences `a[s] − b[s]` over the seeds both have, with a 95 % t interval.

    Args:
        a, b: `{seed: value}`.

    Returns:
        A dict: `seeds`, `differences`, `n`, `mean`, `std` (sample), `t`, `half_width`,
        `low`, `high`, `p` (two-sided, of "the mean difference is 0"), and `verdict`:
        "no difference measured" when the interval contains 0.

    Raises:
        ValueError: with fewer than two seeds in common.
    """
    seeds, diffs = paired_differences(a, b)
    n = len(diffs)
    t = t_quantile_975(n - 1)
    mean = statistics.fmean(diffs)
    std = statistics.stdev(diffs)
    se = std / math.sqrt(n)
    half = t * se
    low, high = mean - half, mean + half
    if low <= 0 <= high:
        verdict = "no difference measured"
    else:
        verdict = "lower for the first" if high < 0 else "higher for the first"
    if se == 0:  # every seed gave the same difference
        p = 1.0 if mean == 0 else 0.0
    else:
        p = 2 * float(stats.t.sf(abs(mean) / se, n - 1))
    return dict(
        seeds=seeds, differences=diffs, n=n, mean=mean, std=std, t=t, half_width=half,
        low=low, high=high, p=p, verdict=verdict,
    )  # fmt: skip


def tost(a, b, margin):
    """The two one-sided tests (TOST) of "|mean of a[s] − b[s]| < margin" over paired seeds.

    Equivalence is shown at α = 0.05 when both one-sided nulls (difference <= −margin, and
    difference >= +margin) are rejected: the larger of the two p-values is below 0.05, which is
    the same as the 90 % interval lying inside (−margin, +margin).

    Args:
        a, b: `{seed: value}`.
        margin: the equivalence margin, positive, in the values' unit; stated before the runs.

    Returns:
        A dict: `n`, `mean`, `margin`, `p_lower` (of difference <= −margin), `p_upper` (of
        difference >= +margin), `p` (their maximum), `equivalent` (p < 0.05), and `low90`,
        `high90` (the 90 % interval).
    """
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive; got {margin}")
    _, diffs = paired_differences(a, b)
    n = len(diffs)
    if n < 2:
        raise ValueError(f"a TOST needs at least 2 paired seeds; got {n}")
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(n)
    if se == 0:
        p_lower = p_upper = 0.0 if abs(mean) < margin else 1.0
    else:
        p_lower = float(stats.t.sf((mean + margin) / se, n - 1))
        p_upper = float(stats.t.cdf((mean - margin) / se, n - 1))
    half90 = float(stats.t.ppf(0.95, n - 1)) * se
    p = max(p_lower, p_upper)
    return dict(
        n=n, mean=mean, margin=margin, p_lower=p_lower, p_upper=p_upper, p=p,
        equivalent=p < 1 - LEVEL, low90=mean - half90, high90=mean + half90,
    )  # fmt: skip


def holm(p_values):
    """Holm's step-down adjustment of a family of p-values, in their given order.

    The i-th smallest of m p-values is multiplied by m − i + 1 (i from 1), the results are made
    non-decreasing in that order and capped at 1. A comparison whose adjusted p is below 0.05
    survives the family-wise error rate of 5 %.
    """
    p_values = list(p_values)
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


MIN_SEEDS = 3  # no verdict from fewer paired seeds


def too_few(difference):
    """Why a paired difference supports no verdict (fewer than `MIN_SEEDS` seeds, or every seed
    giving the same difference, which makes a t interval of width 0), or None."""
    if difference["n"] < MIN_SEEDS:
        return f"not resolved (fewer than {MIN_SEEDS} paired seeds)"
    if difference["std"] == 0:
        return "not resolved (every seed gave the same difference: no spread to test against)"
    return None


def direction_verdict(difference):
    """ "shown" when the 95 % interval of `first − second` lies below 0 (the claim that the first
    is lower), "not shown" when it lies above 0, else "not resolved"."""
    reason = too_few(difference)
    if reason:
        return reason
    if difference["high"] < 0:
        return "shown"
    if difference["low"] > 0:
        return "not shown"
    return "not resolved (the interval contains 0)"


def competitive_verdict(difference, equivalence):
    """The protocol's verdict on "the first method is competitive with the second".

    Args:
        difference: `paired_difference(first, second)` of an error (lower is better).
        equivalence: `tost(first, second, margin)`.

    Returns:
        One of "shown: better" (the 95 % interval below 0), "shown: equivalent within the
        margin" (TOST), "not shown: worse by more than the margin" (the 90 % interval wholly
        above +margin), or "not resolved" (fewer than `MIN_SEEDS` seeds, or an interval that
        neither lies inside the margin nor beyond it).
    """
    reason = too_few(difference)
    if reason:
        return reason
    if difference["high"] < 0:
        return "shown: better"
    if equivalence["equivalent"]:
        return "shown: equivalent within the margin"
    if equivalence["low90"] > equivalence["margin"]:
        return "not shown: worse by more than the margin"
    return "not resolved (the interval is wider than the margin)"
