"""benchmarks/regime_pilot.py: weight decay's factors from their timescales, the report from the
rows alone against a hand computation, and a two-run pilot end to end (rows with commit,
command and machine; compressed metrics; a finished run not run again)."""

import csv
import gzip
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import recorded_runs  # noqa: E402
import regime_pilot  # noqa: E402


def test_factors_put_the_timescale_at_the_asked_fraction_of_the_run():
    from keras_normloss.training import presets

    factors, steps = regime_pilot.factors_at("noaug-13500", "weight-decay", (0.1, 0.3))
    # 13,500 images at batch 128: 105 steps an epoch, 20 epochs.
    assert steps == 105 * 20
    momentum = presets.get("fashion-mnist-small").momentum
    # Cosine with a one-epoch linear warmup from 0: the mean rate, by hand, is
    # (0.5 · 105 + 0.5 · (2100 − 105)) · 0.1 / 2100 (each part averages half the peak).
    mean_lr = 0.1 * 0.5
    for factor, fraction in zip(factors, (0.1, 0.3)):
        timescale = (1 - momentum) / (mean_lr * factor)
        assert timescale / steps == pytest.approx(fraction, rel=0.03)  # factors rounded to 2 digits
    # Norm Loss relaxes twice as fast at the same factor ((1 − μ)/(2ηλ) near norm 1).
    normloss, _ = regime_pilot.factors_at("noaug-13500", "normloss", (0.1, 0.3))
    for factor, fraction in zip(normloss, (0.1, 0.3)):
        timescale = (1 - momentum) / (2 * mean_lr * factor)
        assert timescale / steps == pytest.approx(fraction, rel=0.03)


def test_a_regime_of_your_own_is_train_options_checked_as_train_checks_them():

    options = "--model resnet20 --augment crop-flip --train-subset 1000 --epochs 3"
    regime_pilot.define("mine-1k", options)
    try:
        arguments = regime_pilot.run_arguments(
            "mine-1k", "weight-decay", 0.001, 7, {"batch_size": 64}
        )
        assert arguments == [
            "--preset", "fashion-mnist-small", "--method", "weight-decay", "--seed", "7",
            *options.split(), "--batch-size", "64", "--factor", "0.001",
        ]  # fmt: skip
        config = regime_pilot.regime_config("mine-1k", "none", None)
        assert (config.model, config.augment, config.train_subset, config.epochs) == (
            "resnet20", "crop-flip", 1000, 3,
        )  # fmt: skip
        # Whole batches only, as 13,500 images make 105 steps: 1,000 // 128 = 7 a epoch.
        assert regime_pilot.run_length("mine-1k") == 3 * 7
        assert regime_pilot.run_length("mine-1k", {"batch_size": 64}) == 3 * (1000 // 64)
        regime_pilot.define("mine-1k", options)  # the same definition again: accepted
        with pytest.raises(ValueError, match="already"):
            regime_pilot.define("mine-1k", "--epochs 4")
    finally:
        del regime_pilot.REGIMES["mine-1k"]
    # The same options, spaced otherwise, are the same regime.
    regime_pilot.define(
        "noaug-13500", "  " + regime_pilot.REGIMES["noaug-13500"].replace(" ", "  ")
    )
    assert set(regime_pilot.REGIMES) == {"noaug-13500", "cropflip-3000"}
    assert regime_pilot.REGIMES["noaug-13500"].startswith("--model resnet8 --augment none")


REFUSED = [
    ("has_underscore", "--epochs 2", ValueError, "letters, digits"),
    ("seeded", "--epochs 2 --seed 3", ValueError, "--seed is set for each run"),
    # Abbreviations are what `train` takes them for; the regime's options come after the run's
    # own, and the last of a repeated option wins: `--se 5` would make every seed 5.
    ("abbreviated", "--epochs 2 --se 5 --meth normloss", ValueError,
     "--method, --seed is set for each run"),
    ("old-name", "--regularizer normloss", ValueError, "--method is set"),
    ("elsewhere", "--output /tmp/x", ValueError, "--output is set"),
    ("helpful", "--epochs 2 --help", ValueError, "ask for help"),
    ("unvalidated", "--epochs 2 --validation-split 0", ValueError, "no validation split"),
    ("negative", "--epochs -1", "UsageError", "--epochs"),
    ("nonsense", "--nonsense 1", "UsageError", "unrecognized arguments: --nonsense"),
    ("noaug-13500", "--epochs 2", ValueError, "already"),
]  # fmt: skip


@pytest.mark.parametrize("name, options, error, match", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_regime_train_or_the_study_would_misread_is_refused_and_not_kept(
    name, options, error, match
):
    from keras_normloss.errors import UsageError

    before = dict(regime_pilot.REGIMES)
    with pytest.raises(UsageError if error == "UsageError" else error, match=match):
        regime_pilot.define(name, options)
    assert regime_pilot.REGIMES == before


def test_the_regimes_a_pilot_ran_are_pinned_and_checked_against_its_rows(tmp_path):
    options = "--model resnet8 --augment none --train-subset 512 --epochs 2"
    regime_pilot.define("pinned-512", options)
    try:
        regime_pilot.pin_regimes(str(tmp_path), ["pinned-512"])
    finally:
        del regime_pilot.REGIMES["pinned-512"]
    assert regime_pilot.pinned_regimes(str(tmp_path)) == ["pinned-512"]  # defined again
    try:
        assert regime_pilot.REGIMES["pinned-512"] == options
        ran = "keras-normloss train --preset fashion-mnist-small --method none --seed 0 "
        rows = [dict(regime="pinned-512", run="a", command=ran + options + " --output a"),
                dict(regime="pinned-512", run="b", command=ran + options.replace("512", "1024")),
                dict(regime="other", run="c", command=ran)]  # fmt: skip
        assert [r["run"] for r in regime_pilot.ran_with(rows, "pinned-512")] == ["b"]
    finally:
        del regime_pilot.REGIMES["pinned-512"]


def _rows(path, errors):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, regime_pilot.COLUMNS)
        writer.writeheader()
        for (method, factor, seed), (train_error, test_error) in errors.items():
            writer.writerow(dict(
                regime="noaug-13500", method=method, factor=factor, seed=seed,
                timescale_fraction="" if method == "none" else "0.1",
                final_train_error=train_error, final_test_error=test_error,
            ))  # fmt: skip


def test_the_report_is_the_paired_difference_of_the_rows(tmp_path):
    none = {0: 0.100, 1: 0.104, 2: 0.098}
    decay = {0: 0.094, 1: 0.099, 2: 0.093}
    errors = {("none", "", s): (0.004, e) for s, e in none.items()}
    errors.update({("weight-decay", "0.0095", s): (0.010, e) for s, e in decay.items()})
    _rows(tmp_path / "pilot.csv", errors)
    regime_pilot.report(str(tmp_path))
    text = (tmp_path / "pilot.md").read_text()
    d = np.array([decay[s] - none[s] for s in range(3)])
    half = 4.303 * d.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    expected = (
        f"{100 * d.mean():+.2f} points, 95 % interval [{100 * (d.mean() - half):+.2f}, "
        f"{100 * (d.mean() + half):+.2f}]: weight decay better"
    )
    assert expected in text, text
    assert "| none | - | - | 0, 1, 2 | 0.40 ± 0.00 |" in text


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_two_run_pilot_writes_its_rows_and_resumes(tmp_path):
    out, docs = tmp_path / "runs", tmp_path / "docs"
    args = [sys.executable, str(BENCHMARKS / "regime_pilot.py"), "--output", str(out)]
    args += ["--docs", str(docs), "--regimes", "cropflip-3000", "--seeds", "0"]
    args += ["--fractions", "0.5", "--epochs", "2", "--steps-per-epoch", "2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = recorded_runs.read_rows(docs / "pilot.csv")
    assert [(r["method"], r["seed"], r["steps"]) for r in rows] == [
        ("none", "0", "4"), ("weight-decay", "0", "4"),
    ]  # fmt: skip
    for row in rows:
        assert row["commit"] and row["machine"] and str(tmp_path) not in row["command"]
        assert row["command"].startswith("keras-normloss train --preset fashion-mnist-small")
        assert "--train-subset 3000" in row["command"]
        with gzip.open(docs / "per-run" / row["run"] / "metrics.csv.gz", "rt") as f:
            assert len(list(csv.DictReader(f))) == 2
    assert float(rows[1]["timescale_fraction"]) == pytest.approx(0.5, rel=0.03)
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "[1/2]" not in again.stdout  # both rows exist: nothing runs
    assert len(recorded_runs.read_rows(docs / "pilot.csv")) == 2
    # A row re-run from its commit and command alone, in a clean clone (benchmarks/rerun_cell.py).
    if rows[1]["commit"].endswith("+modified"):
        pytest.skip("re-running a row needs it recorded from committed code; this tree is modified")
    rerun = [sys.executable, str(BENCHMARKS / "rerun_cell.py"), str(docs / "pilot.csv")]
    rerun += [rows[1]["run"], "--output", str(tmp_path / "rerun"), "--record"]
    proc = subprocess.run(rerun, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clone = tmp_path / "rerun" / f"clone-{rows[1]['commit'][:12]}"
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert head == rows[1]["commit"]
    (line,) = recorded_runs.read_rows(docs / "reruns.csv")
    assert line["run"] == rows[1]["run"] and line["command"] == rows[1]["command"]
    for name in ("final_test_error", "validation_error", "final_train_error"):
        assert line[f"{name}_recorded"] == f"{float(rows[1][name]):.6g}"
        # The same machine and commit: the same numbers (a run measured identical to every
        # recorded digit; one image of the 3,000 test images is 3.3e-4).
        assert abs(float(line[f"{name}_rerun"]) - float(rows[1][name])) < 3e-4
