"""The timescale study's figures, drawn from `study.csv`'s rows and the kept per-run files alone
(results protocol §7): 95 % intervals with n on the figure, every line a mean over the same seeds
as the band beside it, one colour per method, axes that say where they do not start at 0."""

import json
import math
import os
import statistics

from paired_stats import t_quantile_975

COLOURS = {"none": "black", "normloss": "tab:blue", "weight-decay": "tab:orange"}
LABELS = {"none": "none", "normloss": "Norm Loss", "weight-decay": "weight decay"}


def band(values):
    """(mean, 95 % t half-width) of a list of per-seed values; half-width 0 for one seed."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(docs, rows):
    """Every figure whose runs exist; returns {title: path}."""
    written = {}
    for name, drawer in (
        ("error against timescale", _error_against_timescale),
        ("the norms and the effective learning rate over the grid", _mechanism_grid),
        ("paired differences", _paired),
        ("error against batch size", _error_against_batch),
        ("convergence", _convergence),
        ("norm dynamics", _dynamics),
    ):
        path = drawer(docs, rows)
        if path:
            written[name] = path
    return written


def _error_against_timescale(docs, rows):
    import timescale_report

    points = timescale_report.grid_points(rows)
    compared = [m for m in ("normloss", "weight-decay") if points.get(m)]
    if not compared:
        return None
    plt = _pyplot()
    # One timescale axis for both: the same x is the same fraction of the run in each panel.
    fig, axes = plt.subplots(1, len(compared), figsize=(5.5 * len(compared), 4), sharex=True,
                             sharey=True, squeeze=False)  # fmt: skip
    none = [100 * float(r["final_test_error"]) for _, _, rs in points.get("none", []) for r in rs]
    for ax, method in zip(axes[0], compared):
        xs = [x for x, _, _ in points[method]]
        stats = [
            band([100 * float(r["final_test_error"]) for r in rs]) for _, _, rs in points[method]
        ]
        ns = sorted({len(rs) for _, _, rs in points[method]})
        ax.errorbar(xs, [m for m, _ in stats], yerr=[h for _, h in stats], marker="o", capsize=4,
                    color=COLOURS[method], label=f"{LABELS[method]} (n = {'/'.join(map(str, ns))} a point)")  # fmt: skip
        chosen = timescale_report.chosen(docs).get(method)
        if chosen and chosen["fraction"] in xs:
            i = xs.index(chosen["fraction"])
            ax.plot([xs[i]], [stats[i][0]], marker="*", ms=16, color=COLOURS[method], ls="",
                    markeredgecolor="black", label="chosen on validation")  # fmt: skip
        if none:
            m, h = band(none)
            ax.axhspan(m - h, m + h, color=COLOURS["none"], alpha=0.12)
            what = f"mean and 95 % interval (n = {len(none)})" if len(none) > 1 else "n = 1"
            ax.axhline(m, color=COLOURS["none"], ls="--", label=f"none, {what}")
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("timescale / run length (1 = the run's steps)")
        top = ax.secondary_xaxis("top")
        top.set_xticks(xs, [f for _, f, _ in points[method]])
        top.set_xlabel(f"{LABELS[method]} factor λ")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("final test error, % (axis does not start at 0)")
    fig.suptitle(
        "Test error against the factor's timescale:\nmean and 95 % interval over the tuning seeds"
        " (no interval where n = 1)"
    )
    return _save(fig, docs, "error_vs_timescale.png")


def _mechanism_grid(docs, rows):
    """Over the grid, against the factor's timescale: each method's final mean channel norm (did
    it act?), and at mid-run its convolutions' mean angular update and mean effective learning
    rate (the mechanism; the mean of η/‖w_c‖² is its smallest channels')."""
    import timescale_report

    points = timescale_report.grid_points(rows)
    compared = [m for m in ("normloss", "weight-decay") if points.get(m)]
    if not compared:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), sharex=True)

    def mid_run(column):
        def measure(r):
            sample = timescale_report.mid_run_sample(docs, r)
            return float(sample[column]) if sample else None

        return measure

    measures = (
        (axes[0], lambda r: float(r["final_norm_mean"]),
         "mean channel norm ‖w‖ at the end\n(every kernel; axis does not start at 0)"),
        (axes[1], mid_run("angular_update"), "mean angle per step at mid-run, rad\n"
         "(convolutions; log scale)"),
        (axes[2], mid_run("effective_lr"), "mean of η/‖w_c‖² at mid-run, convolutions\n"
         "(log scale; the smallest channels dominate)"),
    )  # fmt: skip
    for ax, measure, label in measures:
        none = [v for _, _, rs in points.get("none", []) for v in map(measure, rs) if v]
        if none:
            m, h = band(none)
            ax.axhspan(m - h, m + h, color=COLOURS["none"], alpha=0.12)
            what = f"mean and 95 % interval (n = {len(none)})" if len(none) > 1 else "n = 1"
            ax.axhline(m, color=COLOURS["none"], ls="--", label=f"none, {what}")
        for method in compared:
            values = [[v for v in map(measure, rs) if v] for _, _, rs in points[method]]
            kept = [(x, v) for (x, _, _), v in zip(points[method], values) if v]
            if not kept:
                continue
            stats = [band(v) for _, v in kept]
            ns = sorted({len(v) for _, v in kept})
            ax.errorbar([x for x, _ in kept], [m for m, _ in stats], yerr=[h for _, h in stats],
                        marker="o", capsize=4, color=COLOURS[method],
                        label=f"{LABELS[method]} (n = {'/'.join(map(str, ns))} a point)")  # fmt: skip
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("timescale / run length (1 = the run's steps)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    fig.suptitle("Did each factor act, and what it did to the step the channels feel: "
                 "mean and 95 % interval over the tuning seeds (none: its runs' band)")  # fmt: skip
    return _save(fig, docs, "grid_norms.png")


def _paired(docs, rows):
    import timescale_study

    margin = timescale_study.margin_of(docs)
    comparisons = timescale_study.comparisons(rows, margin)
    if not comparisons:
        return None
    evaluation = len(comparisons)
    exploratory = timescale_study.kernels_only_comparisons(rows)
    comparisons.update({f"{name} (exploratory)": d for name, d in exploratory.items()})
    plt = _pyplot()
    # the exploratory rows' longer labels leave the axes narrower: a wider figure, the legend in 2
    fig, ax = plt.subplots(figsize=(8.5, 5.7) if exploratory else (7.5, 4.2))
    if exploratory:  # the exploratory arm's rows (a family of their own) above a line
        ax.axhline(evaluation - 0.5, color="grey", lw=0.8, ls=":")
    margin *= 100
    ax.axvline(0, color="black", lw=0.8)
    for i, (name, d) in enumerate(comparisons.items()):
        if "tost" in d:  # the equivalence test: its margin and 90 % interval, on its row only
            t = d["tost"]
            ax.fill_between([-margin, margin], i - 0.3, i + 0.3, color="grey", alpha=0.2,
                            label=f"equivalence margin ±{margin:.1f}")  # fmt: skip
            ax.plot([100 * t["low90"], 100 * t["high90"]], [i - 0.22] * 2, color="tab:green",
                    lw=3, label="90 % interval (TOST)")  # fmt: skip
        ax.plot([100 * x for x in d["differences"]], [i] * d["n"], "o", color="grey", alpha=0.6)
        ax.errorbar([100 * d["mean"]], [i], xerr=[[100 * (d["mean"] - d["low"])],
                    [100 * (d["high"] - d["mean"])]], fmt="s", color="black", capsize=5,
                    label="mean, 95 % interval" if i == 0 else None)  # fmt: skip
        # n in a column right of the axes, where no interval or seed can run into it
        ax.text(1.01, i, f"n = {d['n']}", fontsize=8, va="center",
                transform=ax.get_yaxis_transform())  # fmt: skip
    ax.set_yticks(range(len(comparisons)), list(comparisons))
    ax.set_ylim(-0.5, len(comparisons) - 0.5)
    ax.set_xlabel("difference in final test error, points (grey dots: each seed)")
    # below the axes: inside, it covered a row's seeds once a difference reached the edge
    ax.legend(
        fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2 if exploratory else 3
    )
    ax.set_title("Paired differences over the evaluation seeds")
    return _save(fig, docs, "paired.png")


def _error_against_batch(docs, rows):
    """Left, each method's test error against the batch size, with every seed's value as a dot
    (a single bad seed is then seen as one); right, what the verdict compares: each method's
    spread over the batch sizes per seed (max − min), with its mean and 95 % interval."""
    import timescale_report

    if not any(r["phase"] == "batch" for r in rows):
        return None
    plt = _pyplot()
    fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(3, 2))
    every_n, shown = set(), set()
    for k, (method, by_batch) in enumerate(timescale_report.batch_cells(rows).items()):
        batches = sorted(by_batch)
        stats = [band([100 * e for e in by_batch[b].values()]) for b in batches]
        ns = sorted({len(by_batch[b]) for b in batches})
        every_n.update(ns)
        shown.update(batches)
        nudge = 2 ** (0.06 * (k - 1))  # side by side at each batch, so no bar hides another
        ax.errorbar([b * nudge for b in batches], [m for m, _ in stats],
                    yerr=[h for _, h in stats], marker="o", capsize=4, color=COLOURS[method],
                    label=f"{LABELS[method]} (n = {'/'.join(map(str, ns))} a point)")  # fmt: skip
        for b in batches:
            values = [100 * e for e in by_batch[b].values()]
            ax.plot([b * nudge] * len(values), values, ".", color=COLOURS[method], alpha=0.45)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(shown), [str(b) for b in sorted(shown)])
    ax.minorticks_off()
    ax.set_xlabel("batch size (the same epochs; learning rate scaled with the batch)")
    ax.set_title(
        "Test error: mean and 95 % interval over the seeds\n(small dots: each seed)"
        if min(every_n) > 1
        else "Test error, the seeds run so far: mean, and its\n95 % interval where n > 1 "
        "(small dots: each seed)"
    )
    ax.legend(fontsize=8)
    # An error or a spread is never below 0: an interval of few seeds that reaches below is cut
    # at the axis (the t interval is symmetric; the quantity is not).
    ax.set_ylim(bottom=max(0, ax.get_ylim()[0]))
    cut = " (axis does not start at 0)" if ax.get_ylim()[0] > 0 else ""
    ax.set_ylabel(f"final test error, %{cut}")
    spreads, _ = timescale_report.batch_sensitivity(rows)
    drawn = [m for m in COLOURS if spreads.get(m)]
    for i, method in enumerate(drawn):
        values = [100 * v for v in spreads[method].values()]
        mean, half = band(values)
        right.errorbar([i], [mean], yerr=[half], fmt="s", capsize=5, color=COLOURS[method])
        right.plot([i + 0.12] * len(values), values, ".", color=COLOURS[method], alpha=0.6)
    right.set_xticks(range(len(drawn)), [f"{LABELS[m]}\n(n = {len(spreads[m])})" for m in drawn])
    right.set_xlim(-0.5, len(drawn) - 0.5)
    right.set_ylim(bottom=0)
    right.set_ylabel("spread over the batch sizes, points (max − min)")
    right.set_title("What the verdict compares: each seed's spread\n(mean and 95 % interval; dots: "
                    "each seed)")  # fmt: skip
    return _save(fig, docs, "error_vs_batch.png")


def _plot_band(ax, curves, method, n_label=True):
    if not curves:
        return
    n = max(len(v) for v in curves.values())
    xs = sorted(x for x, v in curves.items() if len(v) == n)  # the same seeds at every point
    stats = [band(list(curves[x].values())) for x in xs]
    ys = [m for m, _ in stats]
    ax.plot(xs, ys, color=COLOURS[method], label=f"{LABELS[method]} (n = {n})" if n_label else None)
    ax.fill_between(xs, [m - h for m, h in stats], [m + h for m, h in stats],
                    color=COLOURS[method], alpha=0.2)  # fmt: skip


def _convergence(docs, rows):
    """Left, each arm's curve with its band; right, what the verdict pairs: Norm Loss − weight
    decay and Norm Loss − `none` per epoch over the same seeds (bands of separate arms can
    overlap where every seed's difference has one sign)."""
    import timescale_report

    curves = {m: timescale_report.training_cross_entropy(docs, rows, m) for m in COLOURS}
    if not any(curves.values()):
        return None
    plt = _pyplot()
    fig, (ax, paired) = plt.subplots(1, 2, figsize=(11, 4))
    for method, by_epoch in curves.items():
        _plot_band(ax, by_epoch, method)
    ax.set_yscale("log")
    ax.set_ylabel("training cross-entropy (epoch mean, log scale)")
    ax.set_title("Each method: mean and 95 % band")
    paired.axhline(0, color="black", lw=0.8)
    for other in ("weight-decay", "none"):
        mine, theirs = curves["normloss"], curves[other]
        epochs = sorted(e for e in mine if e in theirs)
        seeds = set.intersection(*(set(mine[e]) & set(theirs[e]) for e in epochs)) if epochs else ()
        if len(seeds) < 2:
            continue
        stats = [band([mine[e][s] - theirs[e][s] for s in seeds]) for e in epochs]
        paired.plot(epochs, [m for m, _ in stats], color=COLOURS[other],
                    label=f"Norm Loss − {LABELS[other]} (n = {len(seeds)})")  # fmt: skip
        paired.fill_between(epochs, [m - h for m, h in stats], [m + h for m, h in stats],
                            color=COLOURS[other], alpha=0.2)  # fmt: skip
    paired.set_ylabel("paired difference in training cross-entropy")
    paired.set_title("Paired by seed: mean and 95 % band\n(below 0: Norm Loss lower)")
    if paired.get_legend_handles_labels()[0]:
        paired.legend(fontsize=8)
    for a in (ax, paired):
        a.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        a.set_xlabel("epoch")
    ax.legend(fontsize=8)
    fig.suptitle("Convergence over the evaluation seeds")
    return _save(fig, docs, "convergence.png")


def _dynamics(docs, rows):
    import timescale_report

    from keras_normloss.methods import norm_theory

    momentum = _momentum(docs)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    drawn = False
    for method in COLOURS:
        for ax, column in zip(axes, ("norm_mean", "angular_update_rms", "effective_lr")):
            curves = timescale_report.evaluation_curves(
                docs, rows, method, "dynamics.csv", lambda s, c=column: float(s[c]), "conv"
            )
            drawn |= bool(curves)
            _plot_band(ax, curves, method)
        factor = next((float(r["factor"]) for r in rows if r["phase"] == "evaluation"
                       and r["method"] == method and r["factor"]), None)  # fmt: skip
        if factor is None:
            continue
        samples = timescale_report.evaluation_curves(docs, rows, method, "dynamics.csv",
                          lambda s: (float(s["learning_rate"]), float(s["norm_mean"])), "conv")  # fmt: skip
        steps = sorted(samples)
        predicted = [
            norm_theory.equilibrium_angular_update(
                method, factor, statistics.fmean(lr for lr, _ in samples[x].values()),
                momentum=momentum, norm=statistics.fmean(n for _, n in samples[x].values()),
            )
            for x in steps
        ]  # fmt: skip
        kept = [(x, p) for x, p in zip(steps, predicted) if p is not None]
        if kept:
            axes[1].plot(*zip(*kept), ls="--", color=COLOURS[method], lw=1,
                         label=f"{LABELS[method]}: equilibrium at the step's η (adiabatic)")  # fmt: skip
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_ylabel("mean channel norm ‖w‖ (axis does not start at 0)")
    axes[1].set_ylabel("RMS angle per step, rad")
    axes[2].set_ylabel("effective learning rate η/‖w‖²")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    fig.suptitle(
        "Convolutions (each followed by BatchNorm): mean and 95 % band over the evaluation seeds"
    )
    return _save(fig, docs, "dynamics.png")


def _momentum(docs):
    """The momentum of the study's regime (pinned in regime.json; the default preset's without
    one)."""
    import regime_pilot

    from keras_normloss.training import presets

    path = os.path.join(docs, "regime.json")
    if not os.path.exists(path):
        return presets.get(regime_pilot.PRESET).momentum
    with open(path) as f:
        regime = regime_pilot.define_pinned(json.load(f))
    return regime_pilot.regime_config(regime, "none", None).momentum


def _save(fig, docs, name):
    path = os.path.join(docs, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
