"""The timescale study's report: `study.md` (each claim's verdict and its numbers) from `study.csv`
and the kept per-run metrics and dynamics alone; the figures are `timescale_figures`'."""

import json
import math
import os
import statistics

import recorded_runs
import timescale_figures
import timescale_study
from paired_stats import direction_verdict, paired_difference, t_quantile_975, too_few

NOT_REACHED = (
    "not reached: each peer tuned at 3 timescale points on the tuning seeds and evaluated on 3 "
    "seeds is about 70 more runs of about 6 minutes on 2 cores, beyond this study's 12 hours"
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


def batch_cells(rows):
    """{method: {batch: {seed: final test error}}} of the batch phase, the regime's own batch
    taken from the evaluation runs of the batch phase's seeds."""
    batch = [r for r in rows if r["phase"] == "batch"]
    seeds = {int(r["seed"]) for r in batch}
    cells = {}
    for r in rows:
        if r["phase"] == "batch" or (r["phase"] == "evaluation" and int(r["seed"]) in seeds):
            by_batch = cells.setdefault(r["method"], {}).setdefault(int(r["batch_size"]), {})
            by_batch[int(r["seed"])] = float(r["final_test_error"])
    return cells


def batch_sensitivity(rows):
    """Each method's spread of test error over the batch sizes, per seed with every batch, and
    Norm Loss − weight decay of those spreads (None before two seeds have every batch)."""
    spreads = {}
    for method, by_batch in batch_cells(rows).items():
        if len(by_batch) < 2:
            continue
        seeds = set.intersection(*(set(v) for v in by_batch.values()))
        spreads[method] = {
            s: max(v[s] for v in by_batch.values()) - min(v[s] for v in by_batch.values())
            for s in seeds
        }
    first, second = (spreads.get(m, {}) for m in timescale_study.COMPARED)
    difference = paired_difference(first, second) if len(set(first) & set(second)) >= 2 else None
    return spreads, difference


def mid_run_sample(docs, row, group="conv"):
    """A run's dynamics sample of `group` nearest half its steps (the cosine schedule's rate is
    then about half its peak; at the end it is 0, and so is every update), or None."""
    samples = [s for s in recorded_runs.read_kept(docs, row["run"], "dynamics.csv")
               if s["group"] == group]  # fmt: skip
    if not samples:
        return None
    middle = int(row["steps"]) / 2
    return min(samples, key=lambda s: abs(int(s["step"]) - middle))


def effective_lr_range(docs, rows, column="effective_lr"):
    """The mechanism claim: per tuning seed, how many decades the convolutions' mid-run effective
    learning rate (the mean over channels of η/‖w_c‖², the measure stated before the runs; or
    another dynamics `column`) spans over a method's grid of factors (log10 of max/min); and
    Norm Loss − weight decay of those ranges (None before two seeds have every point)."""
    points = grid_points(rows)
    ranges = {}
    for method in timescale_study.COMPARED:
        by_point = []
        for _, _, point_rows in points.get(method, []):
            values = {}
            for r in point_rows:
                sample = mid_run_sample(docs, r)
                if sample and float(sample[column]) > 0:
                    values[int(r["seed"])] = float(sample[column])
            by_point.append(values)
        if len(by_point) < 2:
            continue
        seeds = set.intersection(*(set(v) for v in by_point))
        ranges[method] = {
            s: math.log10(max(v[s] for v in by_point) / min(v[s] for v in by_point)) for s in seeds
        }
    first, second = (ranges.get(m, {}) for m in timescale_study.COMPARED)
    difference = paired_difference(first, second) if len(set(first) & set(second)) >= 2 else None
    return ranges, difference


def evaluation_curves(docs, rows, method, name, value, group=None):
    """{x: {seed: value(sample)}} of the evaluation runs of `method` (or the exploratory arm's),
    from their kept `name` CSV (`metrics.csv`: x the epoch; `dynamics.csv`: x the step, samples
    of `group` only)."""
    curves = {}
    for r in rows:
        if r["phase"] not in ("evaluation", "exploratory") or r["method"] != method:
            continue
        for sample in recorded_runs.read_kept(docs, r["run"], name):
            if group is None or sample["group"] == group:
                x = int(sample["epoch"] if group is None else sample["step"])
                curves.setdefault(x, {})[int(r["seed"])] = value(sample)
    return curves


def training_cross_entropy(docs, rows, method):
    """{epoch: {seed: training cross-entropy}} of the evaluation (or exploratory) runs of
    `method`."""
    return evaluation_curves(docs, rows, method, "metrics.csv", lambda s: float(s["cross_entropy"]))


def mean_training_cross_entropy(docs, rows, method):
    """{seed: training cross-entropy averaged over the run's epochs} of the evaluation runs."""
    by_seed = {}
    for _, values in sorted(training_cross_entropy(docs, rows, method).items()):
        for seed, value in values.items():
            by_seed.setdefault(seed, []).append(value)
    return {seed: statistics.fmean(values) for seed, values in by_seed.items()}


def _interval(d, scale=100, unit=" points", digits=2):
    return (
        f"{scale * d['mean']:+.{digits}f}{unit}, 95 % interval [{scale * d['low']:+.{digits}f}, "
        f"{scale * d['high']:+.{digits}f}], n = {d['n']}"
    )


def write(docs, rows):
    """study.md and the figures; returns the paths written."""
    written = timescale_figures.draw(docs, rows)
    lines = _header(docs, rows)
    comparisons = timescale_study.comparisons(rows, timescale_study.margin_of(docs))
    spreads, spread_difference = sensitivity(rows)
    ce = {
        m: mean_training_cross_entropy(docs, rows, m)
        for m in ("none", *timescale_study.COMPARED, timescale_study.KERNELS_ONLY)
    }

    def convergence_difference(other):
        both = len(set(ce["normloss"]) & set(ce[other])) >= 2
        return paired_difference(ce["normloss"], ce[other]) if both else None

    convergence, against_none = (
        convergence_difference("weight-decay"),
        convergence_difference("none"),
    )
    batch_spreads, batch_difference = batch_sensitivity(rows)
    lines += ["## In short", ""]
    lines.append(f"- **Competitive with weight decay** (test error): "
                 f"{_competitive(docs, comparisons)}.")  # fmt: skip
    if spread_difference is None:
        lines.append("- **Less sensitive to the factor**: pending (the grid is not complete).")
    else:
        lines.append(
            f"- **Less sensitive to the factor** (spread of test error over the grid's timescales "
            f"{_fractions(rows)} of the run, per tuning seed): "
            f"{direction_verdict(spread_difference)}: Norm Loss − weight decay "
            f"{_interval(spread_difference)}."
        )
    if convergence is None:
        lines.append("- **Faster convergence**: pending (the evaluation has not run yet).")
    else:
        # The protocol's measure (§5: the paper's cross-entropy figure, Norm Loss against weight
        # decay) gives the verdict; `none` beside it says what no pull at all gives. The rule was
        # fixed after the evaluation rows (before them, this line described and did not judge).
        context = (
            ""
            if against_none is None
            else f": Norm Loss − `none` {_interval(against_none, scale=1, unit='', digits=3)}"
        )
        lines.append(
            "- **Faster convergence** (training cross-entropy averaged over the epochs at the "
            f"chosen factors): {direction_verdict(convergence)}: Norm Loss − weight decay "
            f"{_interval(convergence, scale=1, unit='', digits=3)}; this rule for a verdict was "
            "set after the evaluation rows were in (the measure, before). A lower training loss "
            "also follows from a weaker pull, and `none` has none"
            f"{context}; the per-epoch paired differences are in `convergence.png`."
        )
    ranges, range_difference = effective_lr_range(docs, rows)
    if range_difference is None:
        lines.append("- **The mechanism** (Norm Loss's effective learning rate depends less on "
                     "its factor than weight decay's): pending (the grid is not complete).")  # fmt: skip
    else:
        lines.append(
            "- **The mechanism** (Norm Loss's effective learning rate depends less on its "
            "factor than weight decay's; decades the convolutions' mean η/‖w_c‖² spans at "
            f"mid-run over the grid, per tuning seed): {direction_verdict(range_difference)}: "
            f"Norm Loss − weight decay {_interval(range_difference, scale=1, unit=' decades')}. "
            "A mean of η/‖w_c‖² is its smallest channels' (see the exploratory companion "
            "below)."
        )  # fmt: skip
    if batch_difference is None:
        done = sum(r["phase"] == "batch" for r in rows)
        lines.append("- **Less sensitive to the batch size**: pending (" + (
            f"the batch phase is under way: {done} of its runs so far" if done
            else "the batch phase has not run yet") + ").")  # fmt: skip
    else:
        sizes = sorted(
            {int(r["batch_size"]) for r in rows if r["phase"] in ("batch", "evaluation")}
        )
        lines.append(
            f"- **Less sensitive to the batch size** (spread of test error over batches "
            f"{sizes[0]}–{sizes[-1]}, the same epochs, lr scaled with the batch, per seed): "
            f"{direction_verdict(batch_difference)}: Norm Loss − weight decay "
            f"{_interval(batch_difference)}."
        )
    lines.append("- **The peers**: " + NOT_REACHED + ".")
    lines.append("")
    lines += _choice(docs)
    lines += _grid_table(rows, spreads)
    lines += _angle_companion(docs, rows)
    lines += _comparison_table(comparisons)
    lines += _kernels_only(rows, ce)
    lines += _batch_table(rows, batch_spreads)
    lines += _mechanism(docs, rows)
    lines += [f"![{name}]({os.path.basename(path)})" for name, path in written.items()]
    path = os.path.join(docs, "study.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [path, *written.values()]


def _fractions(rows):
    values = sorted({float(r["fraction"]) for r in rows if r["fraction"]})
    return "–".join(f"{v:g}" for v in (values[0], values[-1])) if values else "(none yet)"


def chosen(docs):
    """choices.json: each compared method's chosen `factor` and `fraction` ({} before it)."""
    return _read_json(docs, "choices.json")


def _choice(docs):
    choices = chosen(docs)
    if not choices:
        return []
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


def _read_json(docs, name):
    path = os.path.join(docs, name)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _competitive(docs, comparisons):
    """The competitive claim's verdict: "not testable here" where the regime cannot test it (the
    pilot's verdict, a chosen factor that did not act within the run, weight decay not better
    than `none` in the evaluation), else `paired_stats.competitive_verdict`, with its numbers."""
    key = "normloss − weight-decay"
    if key not in comparisons:
        return "pending (the evaluation has not run yet)"
    d, t = comparisons[key], comparisons[key]["tost"]
    numbers = (
        f"Norm Loss − weight decay {_interval(d)}; TOST against ±"
        f"{100 * timescale_study.margin_of(docs):.1f} points {_p_is(t['p'])} (90 % interval "
        f"[{100 * t['low90']:+.2f}, {100 * t['high90']:+.2f}])"
    )
    choices = _read_json(docs, "choices.json")
    slow = [m for m in timescale_study.COMPARED if choices.get(m, {}).get("fraction", 0) > 1]
    if d.get("verdict", "").startswith("not shown"):  # the one-sided test that says "worse"
        numbers += (
            f"; one-sided test against a difference ≤ +{100 * t['margin']:.1f} points "
            f"{_p_is(1 - t['p_upper'])}"
        )
    decay = comparisons.get("weight-decay − none")
    if _read_json(docs, "regime.json").get("testable") is False:
        why = "weight decay did not beat `none` in the pilot"
    elif slow:
        why = f"the factor chosen for {', '.join(slow)} relaxes more slowly than the run lasts"
    elif too_few(d):  # the evaluation is not complete: neither verdict nor "not testable" yet
        return f"{too_few(d)}: {numbers}"
    elif decay is not None and decay["high"] >= 0:
        why = "weight decay did not beat `none` in the evaluation (its interval reaches 0)"
    else:
        return f"{d['verdict']}: {numbers}"
    return f"not testable here ({why}): {numbers}"


def _header(docs, rows):
    pinned = _read_json(docs, "regime.json")
    regime = pinned.get("regime") or (rows[0]["regime"] if rows else "(not chosen yet)")
    first = next((r.get("command") for r in rows if r["method"] == "none"), None)
    options = f" (`keras-normloss train {pinned['options']}`)" if pinned.get("options") else ""
    lines = [
        f"# The timescale study in the regime `{regime}`",
        "",
        "Written by `benchmarks/timescale_study.py` from `study.csv` (each row: the run's commit, "
        "its exact command and the machine), `per-run/` (each run's metrics and norm dynamics), "
        f"`regime.json` (the regime{options}, the margin and the pilot's verdict) and "
        "`choices.json` (the factors chosen on validation). Errors in %, on the test split of "
        "the regime's dataset (for the built-in regimes, the 3,000 test images shipped with the "
        "package; every interval is conditional on that one test set); intervals are 95 % "
        "Student-t intervals over seeds, of paired differences where a difference is given, n "
        f"given. Tuning seeds run so far: {_seeds(rows, 'grid')}; evaluation seeds: "
        f'{_seeds(rows, "evaluation")}. The margin of "competitive", fixed before the runs: '
        f"±{100 * timescale_study.margin_of(docs):.1f} points. Weight decay acts on every "
        "parameter, as the references' does (`train`'s default `--weight-decay-on all`, unless "
        "the regime's options say otherwise); Norm Loss on the convolution and Dense kernels. "
        + _reruns(docs),
        "",
    ]
    if first:
        lines += ["The first `none` run's command (the others differ in method, factor, seed "
                  "and batch, and the exploratory arm's in `--weight-decay-on`):", "", f"    {first}", ""]  # fmt: skip
    return lines


def _reruns(docs):
    """What the re-runs of rows (`benchmarks/rerun_cell.py`, reruns.csv) showed, in a sentence."""
    import rerun_cell

    lines = recorded_runs.read_rows(os.path.join(docs, "reruns.csv"))
    if not lines:
        return ("No row has been re-run yet (`benchmarks/rerun_cell.py`); the runs do not use "
                "`--deterministic`.")  # fmt: skip
    same = sum(rerun_cell.identical(line) for line in lines)
    return (f"Re-run from its row alone (its command, in a clean clone at its commit, on the "
            f"machine `reruns.md` names), {same} of {len(lines)} run(s) came back identical to "
            "every recorded digit, epoch by epoch; without `--deterministic` TensorFlow does not "
            "promise this on another machine or library version.")  # fmt: skip


def _p(value):
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _p_is(value):
    """ "p = 0.005" or "p < 0.001", for prose."""
    text = _p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _seeds(rows, phase):
    seeds = sorted({int(r["seed"]) for r in rows if r["phase"] == phase})
    return ", ".join(map(str, seeds)) or "(none yet)"


def _grid_table(rows, spreads):
    if not any(r["phase"] == "grid" for r in rows):
        return []
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


def _kernels_only(rows, ce):
    """The exploratory arm (`timescale_study.KERNELS_ONLY`) beside the evaluation's, per arm and
    paired; no verdict. `ce`: each arm's {seed: mean training cross-entropy}."""
    mine = [r for r in rows if r["phase"] == "exploratory"]
    if not mine:
        return []
    factor = float(mine[0]["factor"])
    lines = [
        "## Exploratory: weight decay on the kernels only (added after the evaluation; no verdict)",
        "",
        f"Weight decay at the factor chosen for it on every parameter (λ = {factor:g}, not tuned "
        "again: its timescale, a property of the kernels, is the same) with `--weight-decay-on "
        "kernels`: the convolution and Dense kernels, which Norm Loss acts on, and BatchNorm's γ "
        "and β and the biases unregularized. Added after the evaluation rows were in, to "
        "separate the two parts of weight decay's lead; the other arms are the evaluation's "
        "runs, paired by seed. Its comparisons are a family of their own (Holm over these "
        "three) and change none of the verdicts above.",
        "",
        "| arm | test error | validation error | final mean channel norm |",
        "|---|---|---|---|",
    ]
    seeds = {r["seed"] for r in mine}
    for method in ("none", *timescale_study.COMPARED, timescale_study.KERNELS_ONLY):
        arm = [r for r in rows if r["phase"] in ("evaluation", "exploratory")
               and r["method"] == method and r["seed"] in seeds]  # fmt: skip
        if arm:
            lines.append(
                f"| {method} | {_points(float(r['final_test_error']) for r in arm)} | "
                f"{_points(float(r['validation_error']) for r in arm)} | "
                f"{_points((float(r['final_norm_mean']) for r in arm), 1, '.3f')} |"
            )
    table = _comparison_table(timescale_study.kernels_only_comparisons(rows))
    if len(set(ce["normloss"]) & set(ce[timescale_study.KERNELS_ONLY])) >= 2:
        d = paired_difference(ce["normloss"], ce[timescale_study.KERNELS_ONLY])
        table += [
            "Training cross-entropy averaged over the epochs (the convergence measure), Norm "
            f"Loss − {timescale_study.KERNELS_ONLY}: {_interval(d, scale=1, unit='', digits=3)}.",
            "",
        ]
    return [*lines, "", *table[2:]] if table else [*lines, ""]


def _batch_table(rows, spreads):
    cells = batch_cells(rows)
    if not any(r["phase"] == "batch" for r in rows):
        return []
    batches = sorted({b for by_batch in cells.values() for b in by_batch})
    lines = [
        "## The batch sizes (final test error; the same epochs, lr scaled with the batch)",
        "",
        "| method | " + " | ".join(f"batch {b}" for b in batches) + " | spread over batches |",
        "|---|" + "---|" * (len(batches) + 1),
    ]
    for method, by_batch in cells.items():
        row = [_points(by_batch[b].values()) if b in by_batch else "-" for b in batches]
        spread = _points(spreads[method].values()) if spreads.get(method) else "-"
        lines.append(f"| {method} | " + " | ".join(row) + f" | {spread} |")
    return [*lines, ""]


def _angle_companion(docs, rows):
    """The mechanism over the mean angle a channel turns per step: exploratory, added after the
    first grid rows, so not a verdict of "In short" and not adjusted for it."""
    _, difference = effective_lr_range(docs, rows, "angular_update")
    if difference is None:
        return []
    return [
        "## The mechanism over the angle per step (exploratory)",
        "",
        "Added after the first grid rows, and not a verdict of the study: the measure stated "
        "before the runs, the mean over channels of η/‖w_c‖², is dominated by its smallest "
        "channels, and weight decay's strongest factors drive single channels toward 0 "
        "(`norm_min` in the runs' metrics). The mean angle a convolution channel turns per step "
        "at mid-run is bounded, and is the step a scale-invariant channel feels. Decades it "
        "spans over each grid, per tuning seed, Norm Loss − weight decay: "
        f"{_interval(difference, scale=1, unit=' decades')} "
        f"({_side(difference)}; unadjusted). `grid_norms.png` draws both measures "
        "against the timescale.",
        "",
    ]


def _side(difference):
    """Where a 95 % interval lies, in words, for what is described rather than judged."""
    reason = too_few(difference)
    if reason:
        return reason
    if difference["high"] < 0:
        return "the 95 % interval lies below 0"
    return "the 95 % interval lies above 0" if difference["low"] > 0 else "it contains 0"


def _mechanism(docs, rows):
    """The evaluation runs' convolutions at mid-run (the sample nearest half the steps, where
    the cosine schedule's rate is about half its peak; at the end it is 0 and so is every
    update): norm, angular update and effective learning rate."""
    lines = ["## The norms (evaluation seeds, convolutions, the sample nearest mid-run)", ""]
    lines += ["| method | mean channel norm | RMS angular update | effective lr η/‖w‖² |"]
    lines += ["|---|---|---|---|"]
    found = False
    for method in ("none", *timescale_study.COMPARED):
        last = [mid_run_sample(docs, r) for r in rows
                if r["phase"] == "evaluation" and r["method"] == method]  # fmt: skip
        last = [s for s in last if s]
        if last:
            found = True
            lines.append(
                f"| {method} | {_points((float(s['norm_mean']) for s in last), 1, '.3f')} | "
                f"{_points((float(s['angular_update_rms']) for s in last), 1, '.3g')} | "
                f"{_points((float(s['effective_lr']) for s in last), 1, '.3g')} |"
            )
    return [*lines, ""] if found else []
