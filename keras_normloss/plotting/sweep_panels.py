"""The panels of the sweep figures, shared by `keras_normloss.plotting.plots` and
`keras_normloss.plotting.grid_plots`: the rows of summary.csv, error against the factor, error against
the batch size, and the readers they need. Each panel draws on a matplotlib Axes it is given.
"""

import collections
import csv
import math
import os
import statistics

from keras_normloss.choices import upgrade_record


def read_csv(path):
    """The rows of a CSV file as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(value):
    """A CSV cell as a float; NaN where it is empty (a method without a factor)."""
    return float(value) if value not in ("", None) else math.nan


def method_of(record):
    """The method of a config.json or summary.csv row (also one written before a rename)."""
    return upgrade_record(record)["method"]


def sweep_rows(sweep_dirs, metric):
    """The finished runs of summary.csv files, each with `metric` in % as `value`."""
    rows = []
    for sweep_dir in sweep_dirs:
        for r in read_csv(os.path.join(sweep_dir, "summary.csv")):
            rows.append(
                {
                    "method": method_of(r),
                    "factor": number(r["factor"]),
                    # The factor's timescale as a multiple of the run (summary.csv; NaN for a
                    # method without one, or a run made before it was recorded).
                    "timescale_fraction": number(r.get("timescale_fraction")),
                    "batch_size": int(r["batch_size"]),
                    "seed": r.get("seed", ""),
                    "value": 100.0 * number(r.get(metric)),
                    "synthetic": r.get("dataset") == "synthetic",
                    "run": os.path.join(sweep_dir, r["run"]),
                }
            )
    return rows


def mean_std(values):
    """Mean and sample standard deviation (0 for one value)."""
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
    means, stds = zip(*(mean_std(values_by_x[x]) for x in xs))
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


def _distinct_colors(n):
    """`n` colours, no two alike: matplotlib's ten-colour cycle, or tab20 beyond ten methods
    (the study's 14 methods once drew Norm Loss and decoupled weight decay in one orange)."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    import matplotlib

    tab20 = matplotlib.colormaps["tab20"]
    return [tab20(i % 20) for i in range(n)]


def factor_panel(ax, rows, batch_size, metric):
    """Error against the factor at one batch size: a line per method that takes a factor,
    a band (mean ± std) per method that does not."""
    by_reg = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        if r["batch_size"] == batch_size:
            by_reg[r["method"]][r["factor"]].append((r["seed"], r["value"]))
    points = []
    colors = _distinct_colors(len(by_reg))
    for color, (reg, by_factor) in zip(colors, sorted(by_reg.items())):
        factors = sorted(f for f in by_factor if not math.isnan(f))
        if factors:
            runs = {f: by_factor[f] for f in factors}
            points += _mean_std_line(ax, runs, color=color, label=reg)
        for f in by_factor:
            if math.isnan(f):  # none / wrs / reparametrizations: no factor
                m, s = mean_std([v for _, v in by_factor[f]])
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


def batch_panel(ax, rows, metric):
    """Error against the batch size: a line per (method, factor) run at several batch sizes."""
    lines = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        factor = "" if math.isnan(r["factor"]) else f" {r['factor']:g}"
        lines[f"{r['method']}{factor}"][r["batch_size"]].append((r["seed"], r["value"]))
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


def main_batch(rows):
    """The batch size most runs used."""
    sizes = collections.Counter(r["batch_size"] for r in rows)
    return max(sizes, key=lambda b: (sizes[b], -b))


def synthetic_title(fig, rows):
    """Says in the title that the points are synthetic data's, if any is."""
    if any(r["synthetic"] for r in rows):
        fig.suptitle("SYNTHETIC data: the points show the pipeline, not a result", color="tab:red")


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
