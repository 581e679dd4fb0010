"""benchmarks/paired_stats.py against independent oracles: NumPy, the printed t table, Student's t
in closed form for 1 and 2 degrees of freedom, and Holm's procedure worked by hand."""

import math
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "benchmarks"))

import paired_stats  # noqa: E402


def _t_cdf_df2(t):
    # Student's t with 2 degrees of freedom in closed form.
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def test_t_quantiles_match_the_printed_table():
    table = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 29: 2.045, 120: 1.980}
    for df, value in table.items():
        assert paired_stats.t_quantile_975(df) == pytest.approx(value, abs=5e-4)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_stats.t_quantile_975(0)


def test_paired_difference_matches_numpy_and_the_t_table():
    a = {0: 0.101, 1: 0.095, 2: 0.110, 3: 0.099, 4: 0.104, 7: 0.5}
    b = {0: 0.098, 1: 0.097, 2: 0.103, 3: 0.096, 4: 0.100}
    result = paired_stats.paired_difference(a, b)
    d = np.array([a[s] - b[s] for s in range(5)])
    half = 2.776 * d.std(ddof=1) / np.sqrt(5)  # t_{0.975, 4} = 2.776
    assert result["seeds"] == [0, 1, 2, 3, 4] and result["n"] == 5
    np.testing.assert_allclose(
        [result["mean"], result["std"], result["low"], result["high"]],
        [d.mean(), d.std(ddof=1), d.mean() - half, d.mean() + half],
        atol=1e-6,  # the table rounds t to 3 decimals
    )
    assert result["verdict"] == "no difference measured"  # [-0.0020, +0.0068]
    far = paired_stats.paired_difference({s: 0.2 + 0.001 * s for s in range(5)}, b)
    assert far["verdict"] == "higher for the first"
    with pytest.raises(ValueError):
        paired_stats.paired_difference({0: 0.1}, {0: 0.2})


def test_the_two_sided_p_value_is_students_in_closed_form():
    a = {0: 0.30, 1: 0.25, 2: 0.28}
    b = {0: 0.0, 1: 0.0, 2: 0.0}
    d = np.array([0.30, 0.25, 0.28])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    result = paired_stats.paired_difference(a, b)
    assert result["p"] == pytest.approx(2 * (1 - _t_cdf_df2(t)), rel=1e-9)
    assert result["p"] < 0.05 and result["verdict"] == "higher for the first"


def test_tost_is_two_one_sided_t_tests_and_its_90_percent_interval():
    a = {0: 10.1, 1: 9.9, 2: 10.05}
    b = {0: 10.0, 1: 10.0, 2: 10.0}
    d = np.array([0.1, -0.1, 0.05])
    se = d.std(ddof=1) / math.sqrt(3)
    margin = 0.5
    result = paired_stats.tost(a, b, margin)
    p_lower = 1 - _t_cdf_df2((d.mean() + margin) / se)
    p_upper = _t_cdf_df2((d.mean() - margin) / se)
    assert result["p_lower"] == pytest.approx(p_lower, rel=1e-6)
    assert result["p_upper"] == pytest.approx(p_upper, rel=1e-6)
    assert result["p"] == pytest.approx(max(p_lower, p_upper), rel=1e-6)
    # Equivalent at α = 0.05 exactly when the 90 % interval lies inside the margin.
    half90 = 2.920 * se  # t_{0.95, 2}
    inside = -margin < d.mean() - half90 and d.mean() + half90 < margin
    assert result["equivalent"] == inside == True  # noqa: E712
    assert result["high90"] == pytest.approx(d.mean() + half90, rel=1e-3)
    narrow = paired_stats.tost(a, b, 0.1)
    assert not narrow["equivalent"]
    with pytest.raises(ValueError, match="positive"):
        paired_stats.tost(a, b, 0)


def test_holm_adjusts_as_worked_by_hand():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.04 → 4·0.01, 3·0.02, 2·0.03, 1·0.04 made non-decreasing.
    p = [0.04, 0.01, 0.03, 0.02]
    assert paired_stats.holm(p) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert paired_stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert paired_stats.holm([]) == []


def test_the_competitive_verdict_follows_the_protocol():
    def verdict(diffs, margin):
        a = {s: d for s, d in enumerate(diffs)}
        b = dict.fromkeys(a, 0.0)
        return paired_stats.competitive_verdict(
            paired_stats.paired_difference(a, b), paired_stats.tost(a, b, margin)
        )

    assert verdict([-0.5, -0.6, -0.55, -0.5, -0.52], 0.3) == "shown: better"
    assert verdict([0.01, -0.02, 0.0, 0.02, -0.01], 0.3) == "shown: equivalent within the margin"
    assert verdict([0.5, 0.6, 0.55, 0.5, 0.52], 0.3) == "not shown: worse by more than the margin"
    assert verdict([0.5, -0.6, 0.3, -0.2, 0.1], 0.3).startswith("not resolved")
    # Worse, but the interval reaches into the margin: neither equivalence nor its opposite.
    assert verdict([0.1, 0.4, 0.2, 0.5, 0.3], 0.3).startswith("not resolved")
    # No verdict from two seeds, nor from seeds that all gave the same difference.
    assert verdict([-0.5, -0.6], 0.3) == "not resolved (fewer than 3 paired seeds)"
    assert verdict([-0.5, -0.5, -0.5], 0.3).startswith("not resolved (every seed gave the same")


def test_a_direction_needs_three_seeds_with_a_spread():
    def verdict(diffs):
        a = {s: d for s, d in enumerate(diffs)}
        return paired_stats.direction_verdict(
            paired_stats.paired_difference(a, dict.fromkeys(a, 0))
        )

    assert verdict([-1.0, -1.1, -0.9]) == "shown"
    assert verdict([1.0, 1.1, 0.9]) == "not shown"
    assert verdict([-1.0, 1.1, 0.2]).startswith("not resolved")
    assert verdict([-1.0, -1.1]).startswith("not resolved (fewer than 3")
