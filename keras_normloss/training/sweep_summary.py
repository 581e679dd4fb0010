"""A sweep's summary: summary.csv written from its finished runs, the factor chosen on the
validation error, and the text table `sweep` ends with."""

import csv
import json
import math
import os

from keras_normloss.choices import upgrade_record

SUMMARY_COLUMNS = (
    "method",
    "factor",
    # The factor's timescale (`methods.norm_theory`) in steps at the schedule's mean learning
    # rate, and as a fraction of the run: above 1 the method had not acted by the run's end.
    "timescale_steps",
    "timescale_fraction",
    "seed",
    "batch_size",
    "final_test_error",
    "final_validation_error",
    "best_test_error",
    "final_train_cross_entropy",
    "final_oblique_distance",
    "epochs",
    "wall_seconds",
    "dataset",
    "run",
)


def write_summary(sweep_dir):
    """(Re)writes summary.csv from the finished runs under `sweep_dir`."""
    rows = []
    for name in sorted(os.listdir(sweep_dir)):
        run_dir = os.path.join(sweep_dir, name)
        results_path = os.path.join(run_dir, "results.json")
        if not os.path.exists(results_path):
            continue
        try:
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
            with open(results_path) as f:
                results = json.load(f)
        except (OSError, ValueError):
            continue  # a damaged run: reported when the sweep reaches it
        config = upgrade_record(config)  # runs made before a field's rename
        rows.append(
            {
                **{k: config[k] for k in ("method", "factor", "seed", "batch_size")},
                **{k: results[k] for k in SUMMARY_COLUMNS if k in results},
                **_timescale_columns(results.get("timescale") or config.get("timescale")),
                "run": name,
            }
        )
    path = os.path.join(sweep_dir, "summary.csv")
    with open(f"{path}.tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(f"{path}.tmp", path)
    return rows


def _timescale_columns(record):
    if not record or record.get("steps") is None:
        return {}
    return {"timescale_steps": record["steps"], "timescale_fraction": record["fraction_of_run"]}


def format_timescale(row):
    """A summary row's timescale as table text: `"5,000 (3.96x)"` (steps, fraction of the run),
    or `"-"` for a method without one."""
    steps = row.get("timescale_steps")
    if steps in (None, ""):
        return "-"
    return f"{float(steps):,.0f} ({float(row['timescale_fraction']):.3g}x)"


def choose_factor(rows, method, batch_size=None):
    """The factor of `method` with the lowest mean final validation error over its seeds.

    Settings are chosen on the images held out of the training split (`--validation-split`),
    never on the test error, which is what is then reported.

    Args:
        rows: rows of summary.csv (`write_summary`), or dicts with the same keys.
        method: a method that takes a factor (`normloss`, `weight-decay`, ...).
        batch_size: consider only runs at this batch size (default: all).

    Returns:
        `(factor, mean validation error)`.

    Raises:
        ValueError: if no run of `method` has a factor and a validation error (the runs
            had no validation split: choosing on the test error is what this refuses).

    Example:

    ```python
    factor, error = choose_factor(write_summary("runs/sweep"), "normloss", batch_size=128)
    ```
    """
    by_factor = {}
    for row in rows:
        if row["method"] != method or row.get("factor") in (None, ""):
            continue
        if batch_size is not None and int(row["batch_size"]) != int(batch_size):
            continue
        error = row.get("final_validation_error")
        if error in (None, ""):
            continue
        by_factor.setdefault(float(row["factor"]), []).append(float(error))
    if not by_factor:
        raise ValueError(
            f"no finished run of {method!r} with a validation error to choose its factor on; "
            "run the sweep with --validation-split (factors are never chosen on test)"
        )
    means = {f: sum(v) / len(v) for f, v in by_factor.items()}
    best = min(means, key=lambda f: (means[f], f))
    return best, means[best]


def at_its_factor(method, factor, factors, default=None):
    """Whether a run of `method` at `factor` is at the method's one factor of a comparison.

    The one rule for "each method at its one factor" (the study's paired differences and
    convergence figure, the grid's seeds figure): a method without a factor (`factor` None,
    empty or NaN) always is; one with a factor is at `factors[method]` (the factor chosen on
    validation) where given, else at `default(method)` (its preset's default), else nowhere.

    Args:
        method: the run's method.
        factor: its factor (a number, a string from a CSV, None or NaN).
        factors: `{method: factor}`, e.g. the factors chosen on validation.
        default: a callable `method -> factor or None`, or None.

    Example:

    ```python
    at_its_factor("normloss", "0.001", {"normloss": 1e-3})  # True
    ```
    """
    if factor in (None, "") or factor != factor:  # NaN
        return True
    one = factors.get(method)
    if one is None and default is not None:
        one = default(method)
    return one is not None and math.isclose(float(factor), one)


def format_table(rows):
    """The sweep's runs as a text table: method, factor, its timescale in steps (and as a
    multiple of the run: above 1x the method had not acted by the end), seed, batch size,
    validation and final test error.

    Args:
        rows: rows of summary.csv (see `write_summary`).

    Returns:
        The table, one line per run after a header.

    Example:

    ```python
    print(format_table(write_summary("runs/sweep")))
    ```
    """
    lines = [
        f"{'method':<28} {'factor':>10} {'timescale (x run)':>20} {'seed':>5} {'batch':>6} "
        f"{'validation error':>17} {'final test error':>17}"
    ]
    for row in rows:
        factor = "-" if row["factor"] in (None, "") else f"{float(row['factor']):g}"
        validation = row.get("final_validation_error")
        validation = "-" if validation in (None, "") else f"{100 * float(validation):.2f} %"
        lines.append(
            f"{row['method']:<28} {factor:>10} {format_timescale(row):>20} {row['seed']:>5} "
            f"{row['batch_size']:>6} "
            f"{validation:>17} {100 * float(row['final_test_error']):>15.2f} %"
        )
    return "\n".join(lines)
