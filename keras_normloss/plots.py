"""Figures from run and sweep directories.

    keras-normloss plot runs/quick-normloss runs/quick-wd -o curves.png
    keras-normloss plot runs/sweep -o sweep.png

Run directories give one figure of three panels over epochs: test error,
training cross-entropy and mean channel norm, one line per run. A sweep
directory (one with summary.csv) gives test error against the factor (log
scale) per regularizer, the mean over seeds with its standard deviation;
regularizers without a factor (none, wrs) are horizontal bands; and, when
the sweep has several batch sizes, test error against batch size.
`keras_normloss.grid_plots` draws the figures of a results grid from these panels.
Reads only the CSV and JSON files of the directories.
"""

import collections
import csv
import json
import math
import os
import statistics
import tempfile

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


def _method(record):
    """The method of a config.json or summary.csv row; `regularizer` before the rename."""
    return record["method"] if "method" in record else record["regularizer"]


def _label(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    factor = "" if config["factor"] is None else f" {config['factor']:g}"
    return (
        f"{_method(config)}{factor} · {config['model']} · seed {config['seed']}"
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
                    "regularizer": _method(r),
                    "factor": _float(r["factor"]),
                    "batch_size": int(r["batch_size"]),
                    "seed": r.get("seed", ""),
                    "value": 100.0 * _float(r.get(metric)),
                    "synthetic": r.get("dataset") == "synthetic",
                    "run": os.path.join(sweep_dir, r["run"]),
                }
            )
    return rows


def _mean_std(values):
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _common_seeds(runs_by_x):
    """Of `{x: [(seed, value), ...]}`, each x's values of the seeds that every x has: a line
    compares like with like (a point averaged over five seeds beside points of one seed would
    draw seed noise as the line's shape). All values where no seed is common to every x."""
    common = set.intersection(*({seed for seed, _ in runs} for runs in runs_by_x.values()))
    values = {
        x: [v for seed, v in runs if seed in common or not common] for x, runs in runs_by_x.items()
    }
    return values, common


def _seeds_label(seeds):
    seeds = sorted((s for s in seeds if s != ""), key=lambda s: (len(s), s))
    if not seeds:  # none in common, or a summary.csv without seeds
        return "seeds not paired"
    if len(seeds) > 3:
        return f"{len(seeds)} seeds"
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"


def _mean_std_line(ax, runs_by_x, label, **style):
    """One line through the mean of each x's runs `(seed, value)` over the seeds common to every
    x (`_common_seeds`, named in the legend), with their std as error bars."""
    values_by_x, seeds = _common_seeds(runs_by_x)
    xs = sorted(values_by_x)
    means, stds = zip(*(_mean_std(values_by_x[x]) for x in xs))
    label = f"{label} ({_seeds_label(seeds)})"
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label, **style)
    return list(zip(xs, means))


def _cut_off_scale_points(ax, points):
    """Where a point lies far above the rest (more than twice their median: weight decay's 57 %
    at 1e-1 beside 9-10 %), ends the y axis above the rest, so that their differences stay
    readable, and writes each cut point's value at the top edge. `points`: (x or None, y)."""
    ys = [y for _, y in points if math.isfinite(y)]
    near = [y for y in ys if y <= 2 * statistics.median(ys)] if ys else []
    if len(near) == len(ys):
        return
    margin = 0.3 * ((max(near) - min(near)) or 1.0)
    top = max(near) + margin
    ax.set_ylim(min(near) - margin, top)
    for x, y in points:
        if x is not None and y > top:
            ax.annotate(
                f"{y:.1f} ↑", (x, top), xytext=(0, -12), ha="center",
                textcoords="offset points", fontsize=8,
            )  # fmt: skip


def _factor_panel(ax, rows, batch_size, metric):
    """Error against the factor at one batch size: a line per method that takes a factor,
    a band (mean ± std) per method that does not."""
    by_reg = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        if r["batch_size"] == batch_size:
            by_reg[r["regularizer"]][r["factor"]].append((r["seed"], r["value"]))
    points = []
    for i, (reg, by_factor) in enumerate(sorted(by_reg.items())):
        color = f"C{i % 10}"
        factors = sorted(f for f in by_factor if not math.isnan(f))
        if factors:
            runs = {f: by_factor[f] for f in factors}
            points += _mean_std_line(ax, runs, color=color, label=reg)
        for f in by_factor:
            if math.isnan(f):  # none / wrs / reparametrizations: no factor
                m, s = _mean_std([v for _, v in by_factor[f]])
                points.append((None, m))
                seeds = {seed for seed, _ in by_factor[f]}
                ax.axhline(
                    m, color=color, ls="--", label=f"{reg} (no factor; {_seeds_label(seeds)})"
                )
                ax.axhspan(m - s, m + s, color=color, alpha=0.15)
    _cut_off_scale_points(ax, points)
    ax.set_xscale("log")
    ax.set_xlabel("regularization factor (λ for normloss, wd for weight-decay)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(f"batch size {batch_size}; mean ± std over the seeds of each line")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _batch_panel(ax, rows, metric):
    """Error against the batch size: a line per (method, factor) run at several batch sizes."""
    lines = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        factor = "" if math.isnan(r["factor"]) else f" {r['factor']:g}"
        lines[f"{r['regularizer']}{factor}"][r["batch_size"]].append((r["seed"], r["value"]))
    several = {label: by_batch for label, by_batch in lines.items() if len(by_batch) > 1}
    for label, by_batch in sorted(several.items()):
        _mean_std_line(ax, by_batch, label=label)
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title("against batch size; mean ± std over the seeds of each line")
    if not several:  # a study part-way through: say so rather than draw empty axes
        ax.text(0.5, 0.5, "no run at a second batch size yet", ha="center", transform=ax.transAxes)
        return
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _main_batch(rows):
    """The batch size most runs used."""
    sizes = collections.Counter(r["batch_size"] for r in rows)
    return max(sizes, key=lambda b: (sizes[b], -b))


def _synthetic_title(fig, rows):
    if any(r["synthetic"] for r in rows):
        fig.suptitle("SYNTHETIC data: the points show the pipeline, not a result", color="tab:red")


def plot_sweeps(sweep_dirs, output, metric="final_test_error"):
    """Test error against the factor per regularizer (and against batch size).

    Args:
        sweep_dirs: sweep directories (each with summary.csv).
        output: the figure's path.
        metric: `final_test_error`, `final_validation_error` or `best_test_error`.

    Returns:
        The matplotlib Figure.

    Raises:
        keras_normloss.cli.UsageError: if no run of the sweeps has finished.

    Example:

    ```python
    plot_sweeps(["runs/sweep"], "sweep.png")
    ```
    """
    plt = _pyplot()
    rows = _sweep_rows(sweep_dirs, metric)
    if not rows:
        raise cli.UsageError(f"no finished runs in {', '.join(sweep_dirs)}")
    n_panels = 2 if len({r["batch_size"] for r in rows}) > 1 else 1
    fig, axes = plt.subplots(
        1, n_panels, figsize=(6.5 * n_panels, 4.5), constrained_layout=True, squeeze=False
    )
    _factor_panel(axes[0][0], rows, _main_batch(rows), metric)
    if n_panels == 2:
        _batch_panel(axes[0][1], rows, metric)
    _synthetic_title(fig, rows)
    fig.savefig(output, dpi=120)
    return fig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
        choices=("final_test_error", "final_validation_error", "best_test_error"),
        help="for sweeps: which error to plot (best_test_error is picked on the test set)",
    )
    return parser


def figure_path(output):
    """The file `-o OUTPUT` writes: OUTPUT, or OUTPUT.png without a suffix (as matplotlib).

    Raises:
        keras_normloss.cli.UsageError: if OUTPUT is a directory, has a format matplotlib
            cannot write, or its directory cannot be written; checked before any drawing.
    """
    if not output:
        raise cli.UsageError("-o is empty; name the figure file, e.g. -o curves.png")
    if os.path.isdir(output):
        raise cli.UsageError(
            f"-o {output} is a directory; name the figure file, e.g. "
            f"-o {os.path.join(output, 'figure.png')}"
        )
    suffix = os.path.splitext(output)[1].lstrip(".").lower()
    if not suffix:
        output, suffix = f"{output}.png", "png"
    import matplotlib.figure

    formats = matplotlib.figure.Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise cli.UsageError(
            f"-o {output}: matplotlib cannot write .{suffix} files; use one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise cli.UsageError(f"-o {output}: the directory {directory} does not exist")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise cli.UsageError(
            f"-o {output} cannot be written: {directory} is not writable "
            f"({error.strerror or error})"
        ) from None
    if os.path.exists(output) and not os.access(output, os.W_OK):
        raise cli.UsageError(f"-o {output} cannot be written: the file is read-only")
    return output


@cli.command("plot")
def main(argv=None):
    """`keras-normloss plot`. Returns 0, or exits with status 2 on bad input."""
    args = build_parser().parse_args(argv)
    output = figure_path(args.output)
    sweeps = [d for d in args.dirs if _is_sweep(d)]
    runs = [d for d in args.dirs if not _is_sweep(d) and _is_run(d)]
    neither = [d for d in args.dirs if d not in sweeps and d not in runs]
    if neither:
        raise cli.UsageError(
            f"not a run or sweep directory (no metrics.csv or summary.csv): {neither[0]}"
        )
    if sweeps and runs:
        raise cli.UsageError("give either run directories or sweep directories, not both")
    try:
        if sweeps:
            plot_sweeps(sweeps, output, args.metric)
        else:
            plot_runs(runs, output)
    except OSError as error:  # the disk filled, or the file went read-only meanwhile
        raise cli.UsageError(f"-o {output} cannot be written ({error.strerror or error})") from None
    print(f"wrote {output}")
    return 0
