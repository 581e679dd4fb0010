"""Figures from run and sweep directories.

    keras-normloss plot runs/quick-normloss runs/quick-wd -o curves.png
    keras-normloss plot runs/sweep -o sweep.png

Run directories give one figure of three panels over epochs: test error,
training cross-entropy and mean channel norm, one line per run. A sweep
directory (one with summary.csv) gives test error against the factor (log
scale) per regularizer, the mean over seeds with its standard deviation;
regularizers without a factor (none, wrs) are horizontal bands; and, when
the sweep has several batch sizes, test error against batch size.
Reads only the CSV and JSON files of the directories.
"""

import collections
import csv
import json
import math
import os
import statistics

from keras_normloss import cli


def _is_sweep(path):
    return os.path.exists(os.path.join(path, "summary.csv"))


def _is_run(path):
    return os.path.exists(os.path.join(path, "metrics.csv"))


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(value):
    return float(value) if value not in ("", None) else math.nan


def _label(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    factor = "" if config["factor"] is None else f" {config['factor']:g}"
    return (
        f"{config['regularizer']}{factor} · {config['model']} · seed {config['seed']}"
        f"{' · SYNTHETIC' if config['dataset'] == 'synthetic' else ''}"
    )


def plot_runs(run_dirs, output):
    """Test error, training cross-entropy and mean channel norm over epochs.

    Args:
        run_dirs: run directories (each with metrics.csv and config.json).
        output: the figure's path (.png, .pdf, .svg).

    Returns:
        The matplotlib Figure.

    Example:

    ```python
    plot_runs(["runs/r110-normloss", "runs/r110-wd"], "curves.png")
    ```
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    panels = (
        ("test_error", "test error (%)", 100.0),
        ("cross_entropy", "training cross-entropy", 1.0),
        ("norm_mean", "mean channel norm ‖w_c‖", 1.0),
    )
    synthetic = False
    for run_dir in run_dirs:
        rows = _read_csv(os.path.join(run_dir, "metrics.csv"))
        synthetic |= any(r.get("dataset") == "synthetic" for r in rows)
        epochs = [int(r["epoch"]) for r in rows]
        label = _label(run_dir)
        for ax, (key, _, scale) in zip(axes, panels):
            ax.plot(epochs, [scale * _float(r[key]) for r in rows], marker="o", ms=3, label=label)
    for ax, (_, title, _) in zip(axes, panels):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[2].axhline(1.0, color="grey", ls="--", lw=1)
    axes[0].legend(fontsize=8)
    if synthetic:
        fig.suptitle("SYNTHETIC data: the curves show the pipeline, not a result", color="tab:red")
    fig.savefig(output, dpi=120)
    return fig


def _sweep_rows(sweep_dirs, metric):
    rows = []
    for sweep_dir in sweep_dirs:
        for r in _read_csv(os.path.join(sweep_dir, "summary.csv")):
            rows.append(
                {
                    "regularizer": r["regularizer"],
                    "factor": _float(r["factor"]),
                    "batch_size": int(r["batch_size"]),
                    "value": 100.0 * _float(r[metric]),
                    "synthetic": r.get("dataset") == "synthetic",
                }
            )
    return rows


def _mean_std(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _mean_std_line(ax, values_by_x, **style):
    """One line through the mean of each x's values, with their std as error bars."""
    xs = sorted(values_by_x)
    stats = [_mean_std(values_by_x[x]) for x in xs]
    ax.errorbar(
        xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, **style
    )


def plot_sweeps(sweep_dirs, output, metric="final_test_error"):
    """Test error against the factor per regularizer (and against batch size).

    Args:
        sweep_dirs: sweep directories (each with summary.csv).
        output: the figure's path.
        metric: `final_test_error` or `best_test_error`.

    Returns:
        The matplotlib Figure.

    Raises:
        keras_normloss.cli.UsageError: if no run of the sweeps has finished.

    Example:

    ```python
    plot_sweeps(["runs/sweep"], "sweep.png")
    ```
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _sweep_rows(sweep_dirs, metric)
    if not rows:
        raise cli.UsageError(f"no finished runs in {', '.join(sweep_dirs)}")
    batch_sizes = sorted({r["batch_size"] for r in rows})
    main_batch = max(batch_sizes, key=lambda b: sum(r["batch_size"] == b for r in rows))
    n_panels = 2 if len(batch_sizes) > 1 else 1
    fig, axes = plt.subplots(
        1, n_panels, figsize=(6.5 * n_panels, 4.5), constrained_layout=True, squeeze=False
    )
    ax = axes[0][0]
    by_reg = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        if r["batch_size"] == main_batch:
            by_reg[r["regularizer"]][r["factor"]].append(r["value"])
    for i, (reg, by_factor) in enumerate(sorted(by_reg.items())):
        color = f"C{i}"
        factors = sorted(f for f in by_factor if not math.isnan(f))
        if factors:
            _mean_std_line(ax, {f: by_factor[f] for f in factors}, color=color, label=reg)
        for f in by_factor:
            if math.isnan(f):  # none / wrs: no factor
                m, s = _mean_std(by_factor[f])
                ax.axhline(m, color=color, ls="--", label=f"{reg} (no factor)")
                ax.axhspan(m - s, m + s, color=color, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("regularization factor (λ for normloss, wd for weight-decay)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(f"batch size {main_batch}; mean ± std over seeds")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if n_panels == 2:
        ax = axes[0][1]
        lines = collections.defaultdict(lambda: collections.defaultdict(list))
        for r in rows:
            factor = "" if math.isnan(r["factor"]) else f" {r['factor']:g}"
            lines[f"{r['regularizer']}{factor}"][r["batch_size"]].append(r["value"])
        for label, by_batch in sorted(lines.items()):
            _mean_std_line(ax, by_batch, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.set_title("against batch size")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if any(r["synthetic"] for r in rows):
        fig.suptitle("SYNTHETIC data: the points show the pipeline, not a result", color="tab:red")
    fig.savefig(output, dpi=120)
    return fig


def build_parser():
    parser = cli.ArgumentParser(
        prog="keras-normloss plot",
        description="Curves of runs, or test error against the factor for sweeps.",
    )
    parser.add_argument("dirs", nargs="+", metavar="RUN_OR_SWEEP_DIR")
    parser.add_argument("-o", "--output", required=True, metavar="FIGURE.png")
    parser.add_argument(
        "--metric",
        default="final_test_error",
        choices=("final_test_error", "best_test_error"),
        help="for sweeps: which test error to plot",
    )
    return parser


@cli.command("plot")
def main(argv=None):
    """`keras-normloss plot`. Returns 0, or exits with status 2 on bad input."""
    args = build_parser().parse_args(argv)
    sweeps = [d for d in args.dirs if _is_sweep(d)]
    runs = [d for d in args.dirs if not _is_sweep(d) and _is_run(d)]
    neither = [d for d in args.dirs if d not in sweeps and d not in runs]
    if neither:
        raise cli.UsageError(
            f"not a run or sweep directory (no metrics.csv or summary.csv): {neither[0]}"
        )
    if sweeps and runs:
        raise cli.UsageError("give either run directories or sweep directories, not both")
    if sweeps:
        plot_sweeps(sweeps, args.output, args.metric)
    else:
        plot_runs(runs, args.output)
    print(f"wrote {args.output}")
    return 0
