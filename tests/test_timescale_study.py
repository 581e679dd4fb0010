"""benchmarks/timescale_study.py: the pilot's choice of regime, the grid's factors and seeds, the
choice on validation, and the report from rows alone against a hand computation; the whole study
end to end at a tiny budget."""

import csv
import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import recorded_runs  # noqa: E402
import timescale_report  # noqa: E402
import timescale_study  # noqa: E402


def _pilot_row(regime, method, factor, seed, train, validation, test):
    return dict(regime=regime, method=method, factor=factor, seed=str(seed),
                final_train_error=str(train), validation_error=str(validation),
                final_test_error=str(test))  # fmt: skip


def test_the_pilot_chooses_the_regime_where_weight_decay_beats_none_and_training_error_is_near_0():
    rows = []
    for s in range(3):
        # "big-gap": none overfits (train 0.5 %), weight decay at 0.01 (lower validation error
        # than 0.001) is better by 0.5 points on every seed.
        rows += [_pilot_row("big-gap", "none", "", s, 0.005, 0.10, 0.10 + 0.001 * s)]
        rows += [_pilot_row("big-gap", "weight-decay", "0.01", s, 0.02, 0.09, 0.095 + 0.001 * s)]
        rows += [_pilot_row("big-gap", "weight-decay", "0.001", s, 0.01, 0.11, 0.08)]
        # "underfit": a larger gap but training error 8 %: it cannot qualify.
        rows += [_pilot_row("underfit", "none", "", s, 0.08, 0.2, 0.25)]
        rows += [_pilot_row("underfit", "weight-decay", "0.01", s, 0.08, 0.2, 0.20 + 0.01 * s)]
    verdict = timescale_study.chosen_regime(rows)
    assert verdict["regime"] == "big-gap" and verdict["testable"]
    big = verdict["regimes"]["big-gap"]
    # The factor is chosen on validation (0.01), not on test error (0.001 would win there).
    assert big["factor"] == "0.01"
    assert big["difference"]["mean"] == pytest.approx(-0.005)
    assert not verdict["regimes"]["underfit"]["qualifies"]
    # Where no regime qualifies, the largest gap is studied and "competitive" is not testable.
    alone = timescale_study.chosen_regime([r for r in rows if r["regime"] == "underfit"])
    assert alone == dict(regime="underfit", testable=False, regimes=alone["regimes"])
    with pytest.raises(ValueError, match="no finished"):
        timescale_study.chosen_regime([])


def test_the_grid_spans_a_tenth_of_the_run_to_ten_runs_on_seeds_never_evaluated():
    assert min(timescale_study.FRACTIONS) == 0.1 and max(timescale_study.FRACTIONS) == 10
    assert len(timescale_study.FRACTIONS) >= 5 and len(timescale_study.TUNING_SEEDS) >= 2
    assert len(timescale_study.EVALUATION_SEEDS) >= 5
    assert not set(timescale_study.TUNING_SEEDS) & set(timescale_study.EVALUATION_SEEDS)
    runs, steps = timescale_study.grid_runs("noaug-13500", (0.1, 10.0), (100,))
    assert steps == 2100
    assert [(m, x) for _, m, _, x, _ in runs] == [
        ("none", None), ("normloss", 0.1), ("normloss", 10.0),
        ("weight-decay", 0.1), ("weight-decay", 10.0),
    ]  # fmt: skip
    factor = {(m, x): f for _, m, f, x, _ in runs}
    # Norm Loss relaxes twice as fast: at the same timescale its factor is half weight decay's;
    # a hundred times the timescale is a hundredth of the factor.
    assert factor["normloss", 0.1] == pytest.approx(factor["weight-decay", 0.1] / 2, rel=0.05)
    assert factor["weight-decay", 10.0] == pytest.approx(
        factor["weight-decay", 0.1] / 100, rel=0.05
    )
    with pytest.raises(SystemExit):
        timescale_study.main(["--output", "x", "--tuning-seeds", "1", "--evaluation-seeds", "1"])


def _study_row(phase, method, factor, fraction, seed, validation, test, train=0.01, norm=1.0):
    name = f"{phase}_{method}_{factor}_{seed}"
    return dict(phase=phase, regime="noaug-13500", method=method, factor=factor,
                fraction=fraction, seed=str(seed), validation_error=str(validation),
                final_test_error=str(test), final_train_error=str(train),
                final_norm_mean=str(norm), steps="40", run=name)  # fmt: skip


def _keep(docs, run, name, rows):
    target = docs / "per-run" / run
    target.mkdir(parents=True, exist_ok=True)
    with gzip.open(target / (name + ".gz"), "wt", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _synthetic_study(docs):
    rng = np.random.default_rng(0)
    rows = []
    for seed in (100, 101, 102):
        rows.append(_study_row("grid", "none", "", "", seed, 0.10, 0.10))
        for i, (x, f) in enumerate(((0.1, "0.01"), (1, "0.001"), (10, "0.0001"))):
            # Norm Loss: flat in the factor; weight decay: best at 0.001, worse at the ends.
            rows.append(_study_row("grid", "normloss", str(f), str(x), seed,
                                   0.095 - 0.001 * (i == 1), 0.095 + 0.001 * i))  # fmt: skip
            rows.append(_study_row("grid", "weight-decay", str(f), str(x), seed,
                                   0.09 + 0.01 * abs(i - 1), 0.09 + 0.01 * abs(i - 1)))  # fmt: skip
    test = {}
    for seed in range(200, 205):
        noise = rng.normal(0, 0.002)
        test[seed] = dict(none=0.100 + noise, normloss=0.094 + noise + rng.normal(0, 0.001),
                          **{"weight-decay": 0.095 + noise + rng.normal(0, 0.001)})  # fmt: skip
        for method, error in test[seed].items():
            factor = "" if method == "none" else "0.001"
            row = _study_row(
                "evaluation", method, factor, "" if method == "none" else "1", seed, 0.1, error
            )
            rows.append(row)
            _keep(docs, row["run"], "metrics.csv", [
                dict(epoch=e, cross_entropy=(1.0 if method == "normloss" else 1.1) / e + 0.001 * seed)
                for e in range(1, 11)
            ])  # fmt: skip
            _keep(docs, row["run"], "dynamics.csv", [
                dict(step=s, epoch=1, learning_rate=0.1, group=g, norm_mean=1.2, norm_std=0.1,
                     angular_update=0.01, angular_update_rms=0.011, relative_update=0.01,
                     effective_lr=0.07, channels=8)
                for s in (1, 20, 40) for g in ("all", "conv")
            ])  # fmt: skip
    return rows, test


def test_the_choice_is_the_lowest_mean_validation_error_over_the_tuning_seeds(tmp_path):
    rows, _ = _synthetic_study(tmp_path)
    choices = timescale_study.choose(rows, (100, 101, 102))
    assert choices == {"normloss": dict(factor=0.001, fraction=1.0),
                       "weight-decay": dict(factor=0.001, fraction=1.0)}  # fmt: skip
    assert timescale_study.choose(rows, (100, 101, 102, 103)) is None  # a tuning seed missing


def test_the_report_is_recomputed_from_the_rows_by_hand(tmp_path):
    rows, test = _synthetic_study(tmp_path)
    (tmp_path / "choices.json").write_text(json.dumps(dict(testable=True)))
    written = timescale_report.write(str(tmp_path), rows)
    text = (tmp_path / "study.md").read_text()
    seeds = sorted(test)
    d = np.array([test[s]["normloss"] - test[s]["weight-decay"] for s in seeds])
    half = 2.776 * d.std(ddof=1) / np.sqrt(5)
    assert (f"Norm Loss − weight decay {100 * d.mean():+.2f} points, 95 % interval "
            f"[{100 * (d.mean() - half):+.2f}, {100 * (d.mean() + half):+.2f}], n = 5") in text  # fmt: skip
    # The factor spread: weight decay's per-seed range is 1 point, Norm Loss's 0.2.
    assert "normloss: test-error spread over the grid 0.20 ± 0.00 (n = 3)" in text
    assert (
        "**Less sensitive to the factor** (spread of test error over the grid's timescales 0.1–10"
        in text
    )
    assert "): shown: Norm Loss − weight decay" in text
    # Convergence: Norm Loss's mean cross-entropy is lower on every seed by 0.1 · mean(1/e).
    gap = 0.1 * np.mean(1 / np.arange(1, 11))
    assert (
        f"**Faster convergence** (training cross-entropy averaged over the epochs): shown: Norm Loss − weight decay {-gap:+.2f}"
        in text
    )
    # Holm over the three comparisons: recomputed by hand.
    # Raw p from scipy's paired t-test (an implementation apart from the module's), then Holm
    # by hand: sorted ascending, times 3, 2, 1, made non-decreasing.
    from scipy import stats

    pairs = (("normloss", "weight-decay"), ("weight-decay", "none"), ("normloss", "none"))
    raw = [stats.ttest_rel([test[s][a] for s in seeds], [test[s][b] for s in seeds]).pvalue
           for a, b in pairs]  # fmt: skip
    order = np.argsort(raw)
    holm = np.maximum.accumulate([min(1, (3 - k) * raw[i]) for k, i in enumerate(order)])
    expected = dict(zip(order, holm))
    printed = {line.split("|")[1].strip(): line.split("|")[5:7] for line in text.splitlines()
               if line.startswith(("| normloss − ", "| weight-decay − "))}  # fmt: skip
    for i, (a, b) in enumerate(pairs):
        for cell, value in zip(printed[f"{a} − {b}"], (raw[i], expected[i])):
            cell = cell.strip()
            assert (
                cell == "< 0.001"
                if value < 0.001
                else float(cell) == pytest.approx(value, abs=1e-3)
            )
    assert "| none | 1.2 ± 0 (n = 5) | 0.011 ± 0 (n = 5) | 0.07 ± 0 (n = 5) |" in text
    assert {os.path.basename(p) for p in written} == {
        "study.md", "error_vs_timescale.png", "paired.png", "convergence.png", "dynamics.png",
    }  # fmt: skip
    assert "not reached" in text


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_tiny_study_runs_chooses_evaluates_reports_and_resumes(tmp_path):
    pilot = tmp_path / "pilot.csv"
    rows = [_pilot_row("noaug-13500", "none", "", s, 0.001, 0.1, 0.1) for s in (0, 1)]
    rows += [_pilot_row("noaug-13500", "weight-decay", "0.01", s, 0.01, 0.09, 0.09 - 0.001 * s)
             for s in (0, 1)]  # fmt: skip
    with open(pilot, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out, docs = tmp_path / "runs", tmp_path / "docs"
    args = [sys.executable, str(BENCHMARKS / "timescale_study.py"), "--output", str(out)]
    args += ["--docs", str(docs), "--pilot", str(pilot), "--fractions", "1"]
    args += ["--tuning-seeds", "100", "--evaluation-seeds", "200", "201"]
    args += ["--epochs", "2", "--steps-per-epoch", "2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = recorded_runs.read_rows(docs / "study.csv")
    assert [(r["phase"], r["method"], r["seed"]) for r in rows] == [
        ("grid", "none", "100"), ("grid", "normloss", "100"), ("grid", "weight-decay", "100"),
        ("evaluation", "none", "200"), ("evaluation", "normloss", "200"),
        ("evaluation", "weight-decay", "200"), ("evaluation", "none", "201"),
        ("evaluation", "normloss", "201"), ("evaluation", "weight-decay", "201"),
    ]  # fmt: skip
    choices = json.loads((docs / "choices.json").read_text())
    assert choices["regime"] == "noaug-13500" and choices["testable"] is True
    for row in rows:
        assert row["commit"] and row["machine"] and str(tmp_path) not in row["command"]
        assert "--augment none" in row["command"] and "--epochs 2" in row["command"]
        assert (docs / "per-run" / row["run"] / "dynamics.csv.gz").exists()
    assert float(rows[1]["timescale_fraction"]) == pytest.approx(1.0, rel=0.05)
    text = (docs / "study.md").read_text()
    assert "Competitive with weight decay" in text and "n = 2" in text
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert (
        again.returncode == 0 and "[grid" not in again.stdout and "[evaluation" not in again.stdout
    )
    assert len(recorded_runs.read_rows(docs / "study.csv")) == 9
