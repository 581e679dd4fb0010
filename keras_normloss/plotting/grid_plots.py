"""The figures and table of a results grid (`benchmarks/fashion_mnist_study.py`'s docs), from
the panels of `keras_normloss.plotting.sweep_panels`: error against factor and batch size, channel
norms over training, errors over seeds, and a table of means.
"""

import collections
import json
import math
import os
import statistics

from keras_normloss import errors
from keras_normloss.plotting import sweep_panels
from keras_normloss.training.sweep_summary import at_its_factor


def plot_grid(sweep_dir, output_dir, base_batch=None, metric="final_test_error", factors=None):
    """The figures of a results grid (`benchmarks/fashion_mnist_study.py`), as PNGs.

    - `error_vs_factor.png`: error against the factor at `base_batch` of the methods run at
      several factors, with `none` as a band (every method, if none was run at two factors);
    - `error_vs_batch.png`: error against the batch size;
    - `norms.png`: the mean channel norm ‖w_c‖ after each epoch, per method and factor
      (mean over seeds), with the unit norm Norm Loss aims at;
    - `seeds.png`: each method's error at `base_batch` and one factor (its entry in
      `factors`, else its preset's default), every seed a dot, mean ± std a bar;
    and `table.md`: mean ± std over seeds of every (method, factor, batch size), with the
    factor's timescale as a multiple of the run (above 1: the method had not acted by its end).

    Args:
        sweep_dir: a sweep directory (summary.csv and its runs).
        output_dir: where the figures go.
        base_batch: the batch size of the factor sweep (default: the most common).
        metric: `final_test_error`, `final_validation_error` or `best_test_error`.
        factors: `{method: factor}` for `seeds.png`, e.g. the factors chosen on validation;
            a method missing from it is shown at its preset's default factor.

    Returns:
        The paths written.

    Raises:
        keras_normloss.errors.UsageError: if no run has finished.

    Example:

    ```python
    plot_grid("runs/fashion-mnist-grid", "docs/results", base_batch=128)
    ```
    """
    plt = sweep_panels.pyplot()
    rows = sweep_panels.sweep_rows([sweep_dir], metric)
    if not rows:
        raise errors.UsageError(f"no finished runs in {sweep_dir}")
    base_batch = base_batch or sweep_panels.main_batch(rows)
    os.makedirs(output_dir, exist_ok=True)
    written = []

    def save(fig, name):
        sweep_panels.synthetic_title(fig, rows)
        path = os.path.join(output_dir, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    sweep_panels.factor_panel(ax, _swept_and_none(rows, base_batch), base_batch, metric)
    save(fig, "error_vs_factor.png")

    fig, ax = plt.subplots(figsize=(7, 5), constrained_layout=True)
    sweep_panels.batch_panel(ax, rows, metric)
    save(fig, "error_vs_batch.png")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True, sharey=True)
    curves = collections.defaultdict(list)
    for r in rows:
        if r["batch_size"] == base_batch:
            metrics = sweep_panels.read_csv(os.path.join(r["run"], "metrics.csv"))
            curves[(r["method"], r["factor"])].append(
                [sweep_panels.number(m["norm_mean"]) for m in metrics]
            )
    for ax, family in zip(axes, ("normloss", "weight-decay")):
        for (reg, factor), runs in sorted(curves.items()):
            if reg not in (family, "none", "wrs"):
                continue
            length = min(len(c) for c in runs)
            mean = [statistics.fmean(c[e] for c in runs) for e in range(length)]
            label = reg if math.isnan(factor) else f"{reg} {factor:g}"
            style = dict(ls="--", color="grey", lw=2.5, zorder=5) if reg == "none" else {}
            if reg == "wrs":
                style = dict(ls=":", color="black")
            ax.plot(range(1, length + 1), mean, marker="o", label=label, **style)
        ax.axhline(1.0, color="tab:red", lw=1, alpha=0.6)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{family}: mean channel norm ‖w_c‖ (batch {base_batch}; mean of seeds)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("mean ‖w_c‖ over every kernel's channels")
    save(fig, "norms.png")

    per_method = _factor_runs(rows, base_batch, factors or {})
    if per_method:  # else no run at the base batch with a preset factor: no such figure
        fig, ax = plt.subplots(figsize=(9, 4.8), constrained_layout=True)
        names = sorted(per_method, key=lambda n: statistics.fmean(per_method[n]))
        for i, name in enumerate(names):
            values = per_method[name]
            m, s = sweep_panels.mean_std(values)
            ax.bar(i, m, yerr=s, color=f"C{i % 10}", alpha=0.5, capsize=4)
            ax.plot([i] * len(values), values, "k.", ms=7)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        low = min(min(v) for v in per_method.values())
        high = max(max(v) for v in per_method.values())
        ax.set_ylim(max(0.0, low - 0.25 * (high - low + 1)), high + 0.25 * (high - low + 1))
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        which = "its chosen factor, else its default" if factors else "its default factor"
        ax.set_title(f"batch {base_batch}, each method at {which}: seeds (dots), mean ± std")
        ax.grid(alpha=0.3, axis="y")
        save(fig, "seeds.png")

    table = os.path.join(output_dir, "table.md")
    with open(table, "w") as f:
        f.write(_markdown_table(rows, metric))
    written.append(table)
    return written


def _swept_and_none(rows, base_batch):
    """The rows of error_vs_factor.png: the methods run at two factors or more at `base_batch`,
    and `none` as the reference band. The other methods, each at one setting, would bury the
    sweep's lines under a dozen bands; seeds.png shows them. All rows where nothing was swept."""
    factors = collections.defaultdict(set)
    for r in rows:
        if r["batch_size"] == base_batch and not math.isnan(r["factor"]):
            factors[r["method"]].add(r["factor"])
    swept = {method for method, fs in factors.items() if len(fs) > 1}
    if not swept:
        return rows
    return [r for r in rows if r["method"] in swept | {"none"}]


def _factor_runs(rows, batch_size, factors):
    """`{label: values}` at one batch size: every method without a factor, and every method
    with one at its factor in `factors`, else at its preset's default factor (read from each
    run's config.json)."""
    out = collections.defaultdict(list)
    for r in rows:
        if r["batch_size"] != batch_size:
            continue
        if not at_its_factor(r["method"], r["factor"], factors, lambda m, r=r: _default(r, m)):
            continue
        factor = "" if math.isnan(r["factor"]) else f" {r['factor']:g}"
        out[f"{r['method']}{factor}"].append(r["value"])
    return out


def _default(row, method):
    """The default factor of `method` under the preset of the run of `row` (its config.json)."""
    from keras_normloss.training import presets

    with open(os.path.join(row["run"], "config.json")) as f:
        preset = json.load(f)["preset"]
    return presets.default_factor(presets.get(preset), method)


def _markdown_table(rows, metric):
    groups = collections.defaultdict(list)
    timescales = collections.defaultdict(list)
    for r in rows:
        groups[(r["method"], r["factor"], r["batch_size"])].append(r["value"])
        timescales[(r["method"], r["factor"], r["batch_size"])].append(r["timescale_fraction"])
    lines = [
        f"| method | factor | timescale (× run) | batch | {metric.replace('_', ' ')} (%), "
        "mean ± std | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for (reg, factor, batch), values in sorted(
        groups.items(),
        key=lambda kv: (kv[0][2], kv[0][0], -1 if math.isnan(kv[0][1]) else kv[0][1]),
    ):
        m, s = sweep_panels.mean_std(values)
        shown = "—" if math.isnan(factor) else f"{factor:g}"
        fractions = [t for t in timescales[(reg, factor, batch)] if not math.isnan(t)]
        timescale = f"{statistics.fmean(fractions):.3g}" if fractions else "—"
        lines.append(
            f"| {reg} | {shown} | {timescale} | {batch} | {m:.2f} ± {s:.2f} | {len(values)} |"
        )
    return "\n".join(lines) + "\n"
