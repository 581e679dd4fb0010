"""Figures from run and sweep directories.

    keras-normloss plot runs/quick-normloss runs/quick-wd -o curves.png
    keras-normloss plot --dynamics runs/quick-normloss runs/quick-wd -o dynamics.png
    keras-normloss plot runs/sweep -o sweep.png

Run directories give one figure of three panels over epochs: test error,
training cross-entropy and mean channel norm, one line per run. A sweep
directory (one with summary.csv) gives test error against the factor (log
scale) per regularizer, the mean over seeds with its standard deviation;
regularizers without a factor (none, wrs) are horizontal bands; and, when
the sweep has several batch sizes, test error against batch size.
With `--dynamics`, run directories give their dynamics.csv over steps instead: mean channel
norm, angular update per step and effective learning rate, each run's predicted equilibrium
angle dashed where the theory has one (`keras_normloss.methods.norm_theory`).
The panels are drawn by `keras_normloss.plotting.sweep_panels`, which the figures of a results
grid (`keras_normloss.plotting.grid_plots`) share.
Reads only the CSV and JSON files of the directories.
"""

import json
import math
import os

from keras_normloss import cli, errors
from keras_normloss.plotting import sweep_panels


def _is_sweep(path):
    return os.path.exists(os.path.join(path, "summary.csv"))


def _is_run(path):
    return os.path.exists(os.path.join(path, "metrics.csv"))


def _label(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    factor = "" if config["factor"] is None else f" {config['factor']:g}"
    return (
        f"{sweep_panels.method_of(config)}{factor} · {config['model']} · seed {config['seed']}"
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
        rows = sweep_panels.read_csv(os.path.join(run_dir, "metrics.csv"))
        synthetic |= any(r.get("dataset") == "synthetic" for r in rows)
        epochs = [int(r["epoch"]) for r in rows]
        label = _label(run_dir)
        for ax, (key, _, scale) in zip(axes, panels):
            ax.plot(
                epochs,
                [scale * sweep_panels.number(r[key]) for r in rows],
                marker="o",
                ms=3,
                label=label,
            )
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


def plot_dynamics(run_dirs, output, group="conv"):
    """Mean channel norm, angular update and effective learning rate against the step.

    One line per run, from its dynamics.csv (`keras_normloss.callbacks.NormDynamics`), for one
    layer kind; on the angle panel each run's predicted equilibrium angle
    (`norm_theory.equilibrium_angular_update` at the sample's learning rate and mean norm) is
    dashed in the run's colour where one applies (`norm_theory.equilibrium_groups`): weight
    decay and Norm Loss, coupled under SGD or decoupled, a constant learning rate, channels
    that a BatchNorm follows. The measured angle reaches it after a few timescales.

    Args:
        run_dirs: run directories with dynamics.csv and config.json.
        output: the figure's path.
        group: the layer kind: `all`, `stem`, `conv`, `shortcut` or `dense`.

    Returns:
        The matplotlib Figure.

    Raises:
        keras_normloss.errors.UsageError: if a run has no dynamics.csv, or none has `group`.

    Example:

    ```python
    plot_dynamics(["runs/nl", "runs/wd"], "dynamics.png")
    ```
    """
    from keras_normloss.methods import norm_theory  # the table only: no Keras

    plt = sweep_panels.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    drawn = 0
    for i, run_dir in enumerate(run_dirs):
        path = os.path.join(run_dir, "dynamics.csv")
        if not os.path.exists(path):
            raise errors.UsageError(
                f"{run_dir} has no dynamics.csv (a run made before it existed, or with "
                "--dynamics-every 0)"
            )
        # Read as CSV here, not with callbacks.read_dynamics: `plot` starts without Keras.
        rows = [
            {k: v if k == "group" else sweep_panels.number(v) for k, v in r.items()}
            for r in sweep_panels.read_csv(path)
            if r["group"] == group
        ]
        if not rows:
            continue
        drawn += 1
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
        colour = f"C{i % 10}"
        steps = [r["step"] for r in rows]
        style = dict(color=colour, lw=1.2)
        axes[0].plot(steps, [r["norm_mean"] for r in rows], label=_label(run_dir), **style)
        axes[1].plot(steps, [r["angular_update_rms"] for r in rows], **style)
        axes[2].plot(steps, [r["effective_lr"] for r in rows], **style)
        predicted = [
            norm_theory.predicted_angle(config, group, r["learning_rate"], r["norm_mean"])
            for r in rows
        ]
        if any(p for p in predicted):
            axes[1].plot(
                steps,
                [p or math.nan for p in predicted],
                color=colour,
                ls="--",
                lw=1,
                label=f"{sweep_panels.method_of(config)}: predicted equilibrium",
            )
    if not drawn:
        raise errors.UsageError(f"no run has channels of kind {group!r} in its dynamics.csv")
    titles = (
        f"mean channel norm ‖w_c‖ ({group})",
        "angular update per step (rad, RMS over channels)",
        "effective learning rate η/‖w_c‖²",
    )
    for ax, title in zip(axes, titles):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="grey", ls=":", lw=1)
    for ax in axes[1:]:
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    fig.savefig(output, dpi=120)
    return fig


def plot_sweeps(sweep_dirs, output, metric="final_test_error"):
    """Test error against the factor per regularizer (and against batch size).

    Args:
        sweep_dirs: sweep directories (each with summary.csv).
        output: the figure's path.
        metric: `final_test_error`, `final_validation_error` or `best_test_error`.

    Returns:
        The matplotlib Figure.

    Raises:
        keras_normloss.errors.UsageError: if no run of the sweeps has finished.

    Example:

    ```python
    plot_sweeps(["runs/sweep"], "sweep.png")
    ```
    """
    plt = sweep_panels.pyplot()
    rows = sweep_panels.sweep_rows(sweep_dirs, metric)
    if not rows:
        raise errors.UsageError(f"no finished runs in {', '.join(sweep_dirs)}")
    n_panels = 2 if len({r["batch_size"] for r in rows}) > 1 else 1
    fig, axes = plt.subplots(
        1, n_panels, figsize=(6.5 * n_panels, 4.5), constrained_layout=True, squeeze=False
    )
    sweep_panels.factor_panel(axes[0][0], rows, sweep_panels.main_batch(rows), metric)
    if n_panels == 2:
        sweep_panels.batch_panel(axes[0][1], rows, metric)
    sweep_panels.synthetic_title(fig, rows)
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
        "--dynamics",
        action="store_true",
        help="for runs: plot dynamics.csv (channel norm, angular update with its predicted "
        "equilibrium, effective learning rate) against the step",
    )
    parser.add_argument(
        "--group",
        default="conv",
        choices=("all", "stem", "conv", "shortcut", "dense"),
        help="with --dynamics: which layers (default conv: the convolutions after the stem)",
    )
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
        keras_normloss.errors.UsageError: if OUTPUT is a directory, has a format matplotlib
            cannot write, or its directory cannot be written; checked before any drawing.
    """
    if not output:
        raise errors.UsageError("-o is empty; name the figure file, e.g. -o curves.png")
    if os.path.isdir(output):
        raise errors.UsageError(
            f"-o {output} is a directory; name the figure file, e.g. "
            f"-o {os.path.join(output, 'figure.png')}"
        )
    suffix = os.path.splitext(output)[1].lstrip(".").lower()
    if not suffix:
        output, suffix = f"{output}.png", "png"
    import matplotlib.figure

    formats = matplotlib.figure.Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise errors.UsageError(
            f"-o {output}: matplotlib cannot write .{suffix} files; use one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise errors.UsageError(f"-o {output}: the directory {directory} does not exist")
    cli.check_writable_directory(directory, f"-o {output}")
    if os.path.exists(output) and not os.access(output, os.W_OK):
        raise errors.UsageError(f"-o {output} cannot be written: the file is read-only")
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
        raise errors.UsageError(
            f"not a run or sweep directory (no metrics.csv or summary.csv): {neither[0]}"
        )
    if sweeps and runs:
        raise errors.UsageError("give either run directories or sweep directories, not both")
    try:
        if sweeps:
            if args.dynamics:
                raise errors.UsageError("--dynamics is for run directories, not sweeps")
            plot_sweeps(sweeps, output, args.metric)
        elif args.dynamics:
            plot_dynamics(runs, output, args.group)
        else:
            plot_runs(runs, output)
    except OSError as error:  # the disk filled, or the file went read-only meanwhile
        raise errors.UsageError(f"-o {output} cannot be written ({error.strerror or error})") from None
    print(f"wrote {output}")
    return 0
