"""The timescale study's report: `study.md` (each claim's verdict and its numbers) from `study.csv`
and the kept per-run metrics and dynamics alone; the figures are `timescale_figures`'."""

import json
import math
import os
import statistics

import recorded_runs
import timescale_figures
import timescale_study
from paired_stats import paired_difference, t_quantile_975

NOT_REACHED = (
    "not reached: the batch-size phase (batches 32 to 512, `none` included, 3 seeds a cell) and "
    "the peers (each tuned at 3 timescale points) need about 100 more runs of about 6 minutes "
    "on 2 cores, beyond this study's 12 hours"
)


def mean_interval(values):
    """(mean, 95 % t half-width or None for one value, n)."""
    values = list(values)
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, None, n
    return mean, t_quantile_975(n - 1) * statistics.stdev(values) / math.sqrt(n), n


def _points(values, scale=100, form=".2f"):
    """ "mean ± 95 % half-width (n = N)" of `values` times `scale`."""
    mean, half, n = mean_interval(values)
    if half is None:
        return f"{scale * mean:{form}} (n = 1)"
    return f"{scale * mean:{form}} ± {scale * half:{form}} (n = {n})"


def grid_points(rows):
    """{method: [(fraction, factor, rows)]} of the grid, by fraction; `none` under fraction None."""
    grid = [r for r in rows if r["phase"] == "grid"]
    points = {}
    for method in ("none", *timescale_study.COMPARED):
        mine = [r for r in grid if r["method"] == method]
        keys = sorted({(r["fraction"], r["factor"]) for r in mine}, key=lambda k: float(k[0] or 0))
        points[method] = [
            (
                float(x) if x else None,
                f,
                [r for r in mine if (r["fraction"], r["factor"]) == (x, f)],
            )
            for x, f in keys
        ]
    return points


def spread_per_seed(points, method, column="final_test_error"):
    """{seed: max − min of `column` over `method`'s grid points}, for seeds with every point."""
    by_point = [{int(r["seed"]): float(r[column]) for r in rs} for _, _, rs in points[method]]
    if len(by_point) < 2:
        return {}
    seeds = set.intersection(*(set(p) for p in by_point))
    return {s: max(p[s] for p in by_point) - min(p[s] for p in by_point) for s in seeds}


def sensitivity(rows):
    """The factor-sensitivity claim: each method's spread of test error over its grid (per tuning
    seed), and the paired difference Norm Loss − weight decay of those spreads (None before two
    seeds have every point)."""
    points = grid_points(rows)
    spreads = {m: spread_per_seed(points, m) for m in timescale_study.COMPARED}
    common = set(spreads["normloss"]) & set(spreads["weight-decay"])
    difference = (
        paired_difference(spreads["normloss"], spreads["weight-decay"])
        if len(common) >= 2
        else None
    )
    return spreads, difference


def _verdict_of(difference, lower_is_claim=True):
    if difference is None:
        return "not resolved (fewer than 2 paired seeds yet)"
    if difference["high"] < 0:
        return "shown" if lower_is_claim else "not shown"
    if difference["low"] > 0:
        return "not shown" if lower_is_claim else "shown"
    return "not resolved (the interval contains 0)"


def mean_training_cross_entropy(docs, rows, method):
    """{seed: training cross-entropy averaged over the run's epochs} of the evaluation runs."""
    result = {}
    for r in rows:
        if r["phase"] == "evaluation" and r["method"] == method:
            metrics = recorded_runs.read_kept(docs, r["run"], "metrics.csv")
            if metrics:
                result[int(r["seed"])] = statistics.fmean(
                    float(m["cross_entropy"]) for m in metrics
                )
    return result


def _interval(d, scale=100, unit=" points"):
    return (
        f"{scale * d['mean']:+.2f}{unit}, 95 % interval [{scale * d['low']:+.2f}, "
        f"{scale * d['high']:+.2f}], n = {d['n']}"
    )


def write(docs, rows):
    """study.md and the figures; returns the paths written."""
    written = timescale_figures.draw(docs, rows)
    lines = _header(docs, rows)
    comparisons = timescale_study.comparisons(rows)
    spreads, spread_difference = sensitivity(rows)
    key = "normloss − weight-decay"
    competitive = comparisons.get(key)
    ce = {m: mean_training_cross_entropy(docs, rows, m) for m in timescale_study.COMPARED}
    convergence = (
        paired_difference(ce["normloss"], ce["weight-decay"])
        if len(set(ce["normloss"]) & set(ce["weight-decay"])) >= 2
        else None
    )
    testable = _testable(docs)
    lines += ["## In short", ""]
    if competitive is None:
        verdict = "not resolved (the evaluation has not run yet)"
    elif testable is False:
        verdict = "not testable here (weight decay did not beat `none` in the pilot)"
    else:
        t = competitive["tost"]
        verdict = (
            f"{competitive['verdict']}: Norm Loss − weight decay {_interval(competitive)}; "
            f"TOST against ±{100 * timescale_study.MARGIN:.1f} points p = {_p(t['p'])}"
        )
    lines.append(f"- **Competitive with weight decay** (test error): {verdict}.")
    if spread_difference is None:
        lines.append("- **Less sensitive to the factor**: not resolved (the grid is not complete).")
    else:
        lines.append(
            f"- **Less sensitive to the factor** (spread of test error over the grid's timescales "
            f"{_fractions(rows)} of the run, per tuning seed): {_verdict_of(spread_difference)}: "
            f"Norm Loss − weight decay {_interval(spread_difference)}."
        )
    if convergence is None:
        lines.append("- **Faster convergence**: not resolved (the evaluation has not run yet).")
    else:
        lines.append(
            "- **Faster convergence** (training cross-entropy averaged over the epochs): "
            f"{_verdict_of(convergence)}: Norm Loss − weight decay "
            f"{_interval(convergence, scale=1, unit='')}."
        )
    lines.append("- **Batch-size sensitivity** and **the peers**: " + NOT_REACHED + ".")
    lines.append("")
    lines += _choice(docs)
    lines += _grid_table(rows, spreads)
    lines += _comparison_table(comparisons)
    lines += _mechanism(docs, rows)
    lines += [f"![{name}]({os.path.basename(path)})" for name, path in written.items()]
    path = os.path.join(docs, "study.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [path, *written.values()]


def _fractions(rows):
    values = sorted({float(r["fraction"]) for r in rows if r["fraction"]})
    return "–".join(f"{v:g}" for v in (values[0], values[-1])) if values else "(none yet)"


def _choice(docs):
    path = os.path.join(docs, "choices.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        choices = json.load(f)
    lines = ["## The factors chosen on validation", ""]
    for method in timescale_study.COMPARED:
        if method in choices:
            c = choices[method]
            acted = (
                "within the run" if c["fraction"] <= 1 else "LONGER than the run: it barely acted"
            )
            lines.append(
                f"- {method}: λ = {c['factor']:g}, timescale {c['fraction']:g} × the run ({acted}); "
                f"lowest mean validation error over tuning seeds {choices.get('tuning_seeds')}."
            )
    return [*lines, ""]


def _testable(docs):
    path = os.path.join(docs, "choices.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("testable")


def _header(docs, rows):
    regime = rows[0]["regime"] if rows else "(no run yet)"
    return [
        f"# The timescale study in the regime `{regime}`",
        "",
        "Written by `benchmarks/timescale_study.py` from `study.csv` (each row: the run's commit, "
        "its exact command and the machine) and `per-run/` (each run's metrics and norm "
        "dynamics). Errors in %; intervals are 95 % Student-t intervals over paired seeds, n "
        f"given. Regime: {regime_options_text(regime)}. Tuning seeds "
        f"{_seeds(rows, 'grid')}; evaluation seeds {_seeds(rows, 'evaluation')}. The margin of "
        f'"competitive", fixed before the runs: ±{100 * timescale_study.MARGIN:.1f} points.',
        "",
    ]


def regime_options_text(regime):
    """The regime as the `train` options a user types."""
    import regime_pilot

    if regime not in regime_pilot.REGIMES:
        return "(unknown)"
    options = " ".join(regime_pilot.run_arguments(regime, "none", None, 0)[:2])
    extra = " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in regime_pilot.REGIMES[regime].items()
    )
    return f"`{options} {extra}`"


def _p(value):
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _seeds(rows, phase):
    seeds = sorted({int(r["seed"]) for r in rows if r["phase"] == phase})
    return ", ".join(map(str, seeds)) or "(none yet)"


def _grid_table(rows, spreads):
    lines = [
        "## The grid (tuning seeds)",
        "",
        "| method | timescale (× run) | factor | validation error | test error | train error "
        "| mean channel norm |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, points in grid_points(rows).items():
        for fraction, factor, rs in points:
            lines.append(
                f"| {method} | {'-' if fraction is None else f'{fraction:g}'} | {factor or '-'} | "
                f"{_points(float(r['validation_error']) for r in rs)} | "
                f"{_points(float(r['final_test_error']) for r in rs)} | "
                f"{_points(float(r['final_train_error']) for r in rs)} | "
                f"{_points((float(r['final_norm_mean']) for r in rs), 1, '.3f')} |"
            )
    lines.append("")
    for method, spread in spreads.items():
        if spread:
            lines.append(
                f"- {method}: test-error spread over the grid {_points(spread.values())} points "
                f"(per tuning seed: max − min over the timescales)."
            )
    return [*lines, ""]


def _comparison_table(comparisons):
    if not comparisons:
        return []
    lines = [
        "## The comparisons (evaluation seeds, final test error)",
        "",
        "| comparison | difference (points) | 95 % interval | n | p | p (Holm, 3 tests) |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in comparisons.items():
        lines.append(
            f"| {name} | {100 * d['mean']:+.2f} | [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}] "
            f"| {d['n']} | {_p(d['p'])} | {_p(d['p_holm'])} |"
        )
    return [*lines, ""]


def _mechanism(docs, rows):
    """The evaluation runs' convolutions at mid-run (the sample nearest half the steps, where
    the cosine schedule's rate is about half its peak; at the end it is 0 and so is every
    update): norm, angular update and effective learning rate."""
    lines = ["## The norms (evaluation seeds, convolutions, the sample nearest mid-run)", ""]
    lines += ["| method | mean channel norm | RMS angular update | effective lr η/‖w‖² |"]
    lines += ["|---|---|---|---|"]
    found = False
    for method in ("none", *timescale_study.COMPARED):
        last = []
        for r in rows:
            if r["phase"] == "evaluation" and r["method"] == method:
                samples = [s for s in recorded_runs.read_kept(docs, r["run"], "dynamics.csv")
                           if s["group"] == "conv"]  # fmt: skip
                if samples:
                    middle = int(r["steps"]) / 2
                    last.append(min(samples, key=lambda s: abs(int(s["step"]) - middle)))
        if last:
            found = True
            lines.append(
                f"| {method} | {_points((float(s['norm_mean']) for s in last), 1, '.3g')} | "
                f"{_points((float(s['angular_update_rms']) for s in last), 1, '.3g')} | "
                f"{_points((float(s['effective_lr']) for s in last), 1, '.3g')} |"
            )
    return [*lines, ""] if found else []
