import csv
import json
import os

import matplotlib.image
import numpy as np
import pytest
from small_runs import tiny_run

from keras_normloss import errors
from keras_normloss.plotting import grid_plots, plots
from keras_normloss.training import sweep

SMALL = tiny_run(16) + ["--epochs", "2", "--steps-per-epoch", "2"]


def test_grid_gives_factorless_regularizers_one_run_per_seed():
    runs = sweep.grid(["normloss", "wrs"], [1e-3, 1e-2], [0, 1], [128])
    assert len(runs) == 2 * 2 + 2
    assert ("wrs", None, 1, 128) in runs and ("normloss", 1e-2, 0, 128) in runs
    assert sweep.run_name("normloss", 1e-3, 0, 128) == "normloss_f0.001_s0_b128"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    args = SMALL + [
        "--regularizer",
        "normloss",
        "wrs",
        "--factor",
        "0.01",
        "0.1",
        "--seed",
        "0",
        "--output",
        str(out),
    ]
    assert sweep.main(args) == 0
    return out, args


@pytest.mark.subprocess
def test_sweep_runs_the_grid_and_summarises(swept):
    out, _ = swept
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["run"] for r in rows) == [
        "normloss_f0.01_s0_b16",
        "normloss_f0.1_s0_b16",
        "wrs_s0_b16",
    ]
    for r in rows:
        results = json.load(open(out / r["run"] / "results.json"))
        assert float(r["final_test_error"]) == pytest.approx(results["final_test_error"])
        assert r["dataset"] == "synthetic"


@pytest.mark.subprocess
def test_sweep_is_resumable(swept, capsys):
    out, args = swept
    stamps = {
        d: os.path.getmtime(out / d / "results.json") for d in os.listdir(out) if (out / d).is_dir()
    }
    os.remove(
        out / "normloss_f0.1_s0_b16" / "results.json"
    )  # as if it had been interrupted at the end
    assert sweep.main(args) == 0
    text = capsys.readouterr().out
    assert text.count("finished already") == 2
    # The table it ends with: one row per run of summary.csv, errors in percent.
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    table = text[text.index("method ") :].splitlines()
    assert table[0].split() == [
        "method",
        "factor",
        "timescale",
        "(x",
        "run)",
        "seed",
        "batch",
        "validation",
        "error",
        "final",
        "test",
        "error",
    ]
    assert len(table) == len(rows) + 2  # and the line with the summary.csv path
    for row, line in zip(rows, table[1:]):
        cells = line.split()
        # The timescale: "-" for wrs; for Norm Loss (1 − μ)/(2ηλ) at the quick preset's constant
        # lr 0.1, momentum 0.9, over the run's steps: λ 0.01: 50 steps, 0.1: 5 steps.
        timescale = cells[2:4] if row["factor"] else cells[2:3]
        cells = cells[:2] + cells[2 + len(timescale) :]
        steps = {"": None, "0.01": 50, "0.1": 5}[row["factor"] and f"{float(row['factor']):g}"]
        if steps is None:
            assert timescale == ["-"]
        else:
            total = int(
                json.load(open(out / row["run"] / "results.json"))["timescale"]["total_steps"]
            )
            assert timescale == [f"{steps:,}", f"({steps / total:.3g}x)"]
            assert float(row["timescale_steps"]) == steps
        assert (cells[0], cells[2], cells[3]) == (row["method"], row["seed"], "16")
        assert cells[1] == (f"{float(row['factor']):g}" if row["factor"] else "-")
        # No validation split in these runs: "-" for the validation error.
        assert cells[4:] == ["-", f"{100 * float(row['final_test_error']):.2f}", "%"]
    assert (out / "normloss_f0.1_s0_b16" / "results.json").exists()
    for d, stamp in stamps.items():
        if d != "normloss_f0.1_s0_b16":
            assert os.path.getmtime(out / d / "results.json") == stamp


@pytest.mark.subprocess
def test_plot_sweep_and_runs(swept, tmp_path):
    out, _ = swept
    figure = tmp_path / "sweep.png"
    assert plots.main([str(out), "-o", str(figure)]) == 0
    assert matplotlib.image.imread(figure).shape[0] > 300
    curves = tmp_path / "curves.png"
    assert (
        plots.main([str(out / "normloss_f0.01_s0_b16"), str(out / "wrs_s0_b16"), "-o", str(curves)])
        == 0
    )
    assert matplotlib.image.imread(curves).shape[1] > 1000
    dynamics = tmp_path / "dynamics.png"
    runs = [str(out / "normloss_f0.01_s0_b16"), str(out / "wrs_s0_b16")]
    assert plots.main(["--dynamics", *runs, "-o", str(dynamics)]) == 0
    assert matplotlib.image.imread(dynamics).shape[1] > 1000
    figure = plots.plot_dynamics(runs, tmp_path / "d.png")
    # A constant learning rate on a ResNet: Norm Loss's predicted equilibrium is drawn dashed
    # beside the two runs' lines; WRS has none.
    lines = figure.axes[1].get_lines()
    assert len(lines) == 3 and [line.get_linestyle() for line in lines].count("--") == 1


def test_the_dynamics_figure_draws_the_predicted_equilibrium_where_it_applies(tmp_path):
    """Runs written by hand: weight decay under a constant lr on a ResNet (predicted
    √(2ηλ/(1 + μ)) at every sample), the same on a Wide ResNet (pre-activation: none)."""
    columns = ["step", "epoch", "learning_rate", "group", "channels", "norm_mean", "norm_std"]
    columns += ["angular_update", "angular_update_rms", "relative_update", "effective_lr"]
    runs = []
    for model in ("resnet20", "wrn16_4"):
        run = tmp_path / model
        run.mkdir()
        config = dict(
            method="weight-decay",
            factor=1e-3,
            momentum=0.9,
            nesterov=False,
            optimizer="sgd",
            model=model,
            lr_schedule="constant",
            lr_decay_epochs=[],
            seed=0,
            dataset="synthetic",
        )
        (run / "config.json").write_text(json.dumps(config))
        with open(run / "dynamics.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for step in (1, 50, 100):
                writer.writerow([step, 1, 0.05, "conv", 8, 1.2, 0.1, 0.005, 0.006, 0.01, 0.03])
        runs.append(str(run))
    figure = plots.plot_dynamics(runs, tmp_path / "d.png")
    lines = figure.axes[1].get_lines()
    assert len(lines) == 3  # two measured, one predicted
    np.testing.assert_allclose(lines[1].get_ydata(), np.sqrt(2 * 0.05 * 1e-3 / 1.9))
    assert lines[1].get_linestyle() == "--"
    with pytest.raises(errors.UsageError, match="no dynamics.csv"):
        plots.plot_dynamics([str(tmp_path)], tmp_path / "e.png")


def test_plot_rejects_what_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        plots.main([str(tmp_path), "-o", str(tmp_path / "x.png")])
    assert info.value.code == 2 and "not a run or sweep directory" in capsys.readouterr().err


def test_plot_sweep_with_batch_sizes(tmp_path):
    """The batch-size panel, on a hand-written summary (an independent input)."""
    sweep_dir = tmp_path / "s"
    sweep_dir.mkdir()
    rows = [
        {
            "method": reg,
            "factor": f,
            "seed": s,
            "batch_size": b,
            "final_test_error": 0.1 + 0.01 * s,
            "best_test_error": 0.1,
            "dataset": "cifar10",
            "run": f"{reg}{s}{b}",
        }
        for reg, f in (("normloss", 0.001), ("weight-decay", 0.0001), ("none", ""))
        for s in (0, 1)
        for b in (64, 128, 256)
    ]
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sweep.SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fig = plots.plot_sweeps([str(sweep_dir)], tmp_path / "b.png")
    assert len(fig.axes) == 2
    assert fig.axes[1].get_xlabel() == "batch size"


def test_a_line_averages_only_the_seeds_every_point_has(tmp_path):
    """The study's shape: seed 0 at every batch size, seeds 0-4 at batch 128 (phase 3). The
    batch line is seed 0's alone, and says so; the factor panel's line too."""
    sweep_dir = tmp_path / "s"
    sweep_dir.mkdir()
    errors = {(32, 0): 0.09, (128, 0): 0.091, (512, 0): 0.116}
    errors.update({(128, s): 0.1 + 0.01 * s for s in (1, 2, 3, 4)})  # would lift the mean
    rows = [
        {"method": "normloss", "factor": 1e-4, "seed": s, "batch_size": b,
         "final_test_error": e, "dataset": "fashion_mnist", "run": f"r{b}_{s}"}
        for (b, s), e in errors.items()
    ] + [
        {"method": "normloss", "factor": 1e-2, "seed": 0, "batch_size": 128,
         "final_test_error": 0.095, "dataset": "fashion_mnist", "run": "f"}
    ]  # fmt: skip
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sweep.SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fig = plots.plot_sweeps([str(sweep_dir)], tmp_path / "b.png")
    factor_ax, batch_ax = fig.axes
    (line,) = batch_ax.containers
    np.testing.assert_allclose(np.asarray(line.lines[0].get_ydata(), float), [9.0, 9.1, 11.6])
    assert line.get_label() == "normloss 0.0001 (seed 0)"
    (line,) = factor_ax.containers
    np.testing.assert_allclose(np.asarray(line.lines[0].get_ydata(), float), [9.1, 9.5])


@pytest.mark.parametrize("worst", [0.572, 0.102])
def test_a_point_far_above_the_rest_is_cut_off_and_labelled(tmp_path, worst):
    """Weight decay's 57.2 % at 1e-1 beside 9-10 %: the y axis ends above the rest (their
    differences stay readable) and the cut point's value is written at the top edge; without
    such a point the axis is matplotlib's own."""
    sweep_dir = tmp_path / "s"
    sweep_dir.mkdir()
    errors = {1e-5: 0.090, 1e-3: 0.091, 1e-2: 0.100, 1e-1: worst}
    rows = [
        {"method": "weight-decay", "factor": f, "seed": 0, "batch_size": 128,
         "final_test_error": e, "dataset": "fashion_mnist", "run": f"wd{f}"}
        for f, e in errors.items()
    ] + [{"method": "none", "factor": "", "seed": 0, "batch_size": 128,
          "final_test_error": 0.095, "dataset": "fashion_mnist", "run": "none"}]  # fmt: skip
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sweep.SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (ax,) = plots.plot_sweeps([str(sweep_dir)], tmp_path / "f.png").axes
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.texts]
    if worst > 0.2:
        assert low == pytest.approx(9.0 - 0.3) and high == pytest.approx(10.0 + 0.3)
        assert labels == ["57.2 ↑"]
    else:
        assert high > 10.2 and labels == []


def _row(method, factor, seed, validation, test):
    return {
        "method": method,
        "factor": "" if factor is None else str(factor),
        "seed": str(seed),
        "batch_size": "128",
        "final_validation_error": "" if validation is None else str(validation),
        "final_test_error": str(test),
    }


def test_factor_is_chosen_on_validation_never_on_test():
    # 1e-3 has the lower test error, 1e-2 the lower mean validation error over the seeds.
    rows = [
        _row("normloss", 1e-3, 0, 0.20, 0.05),
        _row("normloss", 1e-3, 1, 0.10, 0.05),
        _row("normloss", 1e-2, 0, 0.12, 0.30),
        _row("normloss", 1e-2, 1, 0.14, 0.30),
        _row("weight-decay", 1e-4, 0, 0.01, 0.90),
        _row("none", None, 0, 0.0, 0.0),
    ]
    factor, error = sweep.choose_factor(rows, "normloss", batch_size=128)
    assert factor == 1e-2 and error == pytest.approx(0.13)
    assert sweep.choose_factor(rows, "weight-decay")[0] == 1e-4


def test_choosing_a_factor_without_validation_errors_is_refused():
    rows = [_row("normloss", 1e-3, 0, None, 0.05)]
    with pytest.raises(ValueError, match="never chosen on test"):
        sweep.choose_factor(rows, "normloss")


def test_a_summary_written_before_the_method_rename_still_plots(tmp_path):
    """A summary.csv with a `regularizer` column, as every sweep wrote before issue 17 (the first
    lines of the grid once in docs/results), still plots."""
    results = tmp_path / "old-grid"
    results.mkdir()
    (results / "summary.csv").write_text(
        "regularizer,factor,seed,batch_size,final_test_error,best_test_error,"
        "final_train_cross_entropy,final_oblique_distance,epochs,wall_seconds,dataset,run\n"
        "none,,0,128,0.3931,0.3931,1.03791,0.305446,3,101.3978,fashion_mnist,none_s0_b128\n"
        "none,,0,32,0.299,0.299,0.912515,0.29232,3,131.7463,fashion_mnist,none_s0_b32\n"
        "normloss,0.01,0,128,0.4501,0.4501,1.1,0.01,3,99.0,fashion_mnist,normloss_f0.01_s0_b128\n"
    )
    plots.plot_sweeps([str(results)], str(tmp_path / "old.png"))
    assert (tmp_path / "old.png").stat().st_size > 0


def test_seeds_figure_takes_the_chosen_factors_over_the_presets():
    """The study's seeds.png shows each method at the factor chosen on validation; the rows
    need no config.json then (the preset's default is read only for a method not chosen)."""
    nan = float("nan")
    rows = [
        {"method": reg, "factor": f, "batch_size": b, "value": v, "run": "/nowhere"}
        for reg, f, b, v in [
            ("normloss", 1e-4, 128, 9.1),
            ("normloss", 1e-4, 128, 9.3),
            ("normloss", 1e-2, 128, 8.0),  # not chosen
            ("weight-decay", 1e-5, 128, 9.0),
            ("weight-decay", 1e-5, 64, 7.0),  # another batch size
            ("none", nan, 128, 9.5),
        ]
    ]
    runs = grid_plots._factor_runs(rows, 128, {"normloss": 1e-4, "weight-decay": 1e-5})
    assert dict(runs) == {"normloss 0.0001": [9.1, 9.3], "weight-decay 1e-05": [9.0], "none": [9.5]}


def test_the_grids_factor_figure_keeps_the_swept_methods_and_none():
    """error_vs_factor.png shows the methods swept over factors and `none`; a peer at one
    setting (a factor or none) goes to seeds.png instead. With no sweep, every method stays."""
    nan = float("nan")
    rows = [
        {"method": reg, "factor": f, "batch_size": b}
        for reg, f, b in [
            ("normloss", 1e-4, 128),
            ("normloss", 1e-2, 128),
            ("weight-decay", 1e-5, 128),
            ("weight-decay", 1e-3, 128),
            ("so", 1e-2, 128),  # one factor: a peer
            ("so", 1e-3, 64),  # a second factor, at another batch size
            ("oni", nan, 128),
            ("none", nan, 128),
        ]
    ]
    kept = {r["method"] for r in grid_plots._swept_and_none(rows, 128)}
    assert kept == {"normloss", "weight-decay", "none"}
    peers = [r for r in rows if r["method"] in ("so", "oni", "none")]
    assert grid_plots._swept_and_none(peers, 128) == peers


def test_a_factor_panel_of_many_methods_gives_each_its_own_colour():
    """Beyond matplotlib's ten-colour cycle (the study has 14 methods), no two methods share
    a colour (Norm Loss and decoupled weight decay once were both orange)."""
    import matplotlib.colors

    from keras_normloss.plotting import sweep_panels

    nan = float("nan")
    rows = [
        {"method": f"m{i:02d}", "factor": 10.0 ** -(i % 3 + 2) if i % 2 else nan,
         "batch_size": 128, "seed": "0", "value": 9.0 + 0.1 * i}
        for i in range(14)
    ]  # fmt: skip
    plt = sweep_panels.pyplot()
    fig, ax = plt.subplots()
    sweep_panels.factor_panel(ax, rows, 128, "final_test_error")
    handles, labels = ax.get_legend_handles_labels()
    colours = {
        matplotlib.colors.to_hex(
            h.get_color() if hasattr(h, "get_color") else h.lines[0].get_color()
        )
        for h in handles
    }
    plt.close(fig)
    assert len(labels) == 14 and len(colours) == 14


def test_at_its_factor_is_the_chosen_factor_else_the_default_and_always_for_none():
    from keras_normloss.training.sweep_summary import at_its_factor

    chosen = {"normloss": 1e-3}
    assert at_its_factor("none", "", chosen) and at_its_factor("wrs", float("nan"), chosen)
    assert at_its_factor("normloss", "0.001", chosen)  # a CSV's string
    assert not at_its_factor("normloss", 1e-2, chosen)
    assert not at_its_factor("so", 1e-2, chosen)  # neither chosen nor a default: nowhere
    assert at_its_factor("so", 1e-2, chosen, default=lambda method: 1e-2)
