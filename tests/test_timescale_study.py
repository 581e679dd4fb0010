"""benchmarks/timescale_study.py: the pilot's choice of regime, the grid's factors and seeds, the
choice on validation, and the report from rows alone against a hand computation; the whole study
end to end at a tiny budget."""

import argparse
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
import regime_pilot  # noqa: E402
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
    assert {b for *_, b in runs} == {128}
    assert [(m, x) for _, m, _, x, _, _ in runs] == [
        ("none", None), ("normloss", 0.1), ("normloss", 10.0),
        ("weight-decay", 0.1), ("weight-decay", 10.0),
    ]  # fmt: skip
    factor = {(m, x): f for _, m, f, x, _, _ in runs}
    # Norm Loss relaxes twice as fast: at the same timescale its factor is half weight decay's;
    # a hundred times the timescale is a hundredth of the factor.
    assert factor["normloss", 0.1] == pytest.approx(factor["weight-decay", 0.1] / 2, rel=0.05)
    assert factor["weight-decay", 10.0] == pytest.approx(
        factor["weight-decay", 0.1] / 100, rel=0.05
    )
    with pytest.raises(SystemExit):
        timescale_study.main(["--output", "x", "--tuning-seeds", "1", "--evaluation-seeds", "1"])


def _study_row(phase, method, factor, fraction, seed, validation, test, train=0.01, norm=1.0,
               batch=128):  # fmt: skip
    name = f"{phase}_{method}_{factor}_{seed}_b{batch}"
    return dict(phase=phase, regime="noaug-13500", method=method, factor=factor,
                fraction=fraction, seed=str(seed), validation_error=str(validation),
                final_test_error=str(test), final_train_error=str(train),
                final_norm_mean=str(norm), steps="40", run=name, batch_size=str(batch))  # fmt: skip


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
            # Norm Loss: nearly flat in the factor (a spread of 0.2, 0.3 and 0.4 points on the
            # three seeds); weight decay: best at 0.001, a point worse at the ends.
            rows.append(_study_row("grid", "normloss", str(f), str(x), seed,
                                   0.095 - 0.001 * (i == 1),
                                   0.095 + 0.001 * i * (1 + 0.5 * (seed - 100))))  # fmt: skip
            rows.append(_study_row("grid", "weight-decay", str(f), str(x), seed,
                                   0.09 + 0.01 * abs(i - 1), 0.09 + 0.01 * abs(i - 1)))  # fmt: skip
            # Mid-run effective learning rates (step 20 of 40): Norm Loss's within 10 % over
            # the grid, weight decay's over 2, 2.1 and 2.2 decades on the three seeds; mean
            # angles: Norm Loss's within 20 %, weight decay's over 1, 1.1 and 1.2 decades.
            k = seed - 100
            for method, lr, angle in (
                ("normloss", 0.07 * (1 + 0.05 * i), 0.01 * (1 + 0.1 * i)),
                ("weight-decay", 0.07 * 10 ** (i * (1 + 0.05 * k)),
                 0.01 * 10 ** (0.5 * i * (1 + 0.1 * k))),
            ):  # fmt: skip
                run = rows[-2 if method == "normloss" else -1]["run"]
                _keep(docs, run, "dynamics.csv", [
                    dict(step=s, epoch=1, learning_rate=0.1, group="conv", norm_mean=1.0,
                         norm_std=0.1, angular_update=angle if s == 20 else 0.5,
                         angular_update_rms=0.01, relative_update=0.01,
                         effective_lr=lr if s == 20 else 1.0, channels=8)
                    for s in (1, 20, 40)
                ])  # fmt: skip
    test = {}
    # Training cross-entropy, a/epoch: Norm Loss's a grows 0.01 a seed from 1.0, weight decay's
    # is 1.1 and none's 0.95.
    cross_entropy = {"none": lambda seed: 0.95, "weight-decay": lambda seed: 1.1,
                     "normloss": lambda seed: 1.0 + 0.01 * (seed - 200)}  # fmt: skip
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
                dict(epoch=e, cross_entropy=cross_entropy[method](seed) / e + 0.001 * seed)
                for e in range(1, 11)
            ])  # fmt: skip
            _keep(docs, row["run"], "dynamics.csv", [
                dict(step=s, epoch=1, learning_rate=0.1, group=g, norm_mean=1.2, norm_std=0.1,
                     angular_update=0.01, angular_update_rms=0.011, relative_update=0.01,
                     effective_lr=0.07, channels=8)
                for s in (1, 20, 40) for g in ("all", "conv")
            ])  # fmt: skip
    # The batch phase on seeds 200-202: each method's error at batches 32 and 512 above its
    # batch-128 error by these amounts (spreads 0.5, 2 and 3 points, plus 0.1 a seed).
    above = {"normloss": (0.001, 0.005), "weight-decay": (0.002, 0.020), "none": (0.0, 0.03)}
    for seed in (200, 201, 202):
        for method, (at_32, at_512) in above.items():
            at_512 += 0.001 * (seed - 200) * (method == "normloss")
            for batch, plus in ((32, at_32), (512, at_512)):
                factor = "" if method == "none" else "0.001"
                rows.append(_study_row("batch", method, factor, "" if method == "none" else "1",
                                       seed, 0.1, test[seed][method] + plus, batch=batch))  # fmt: skip
    return rows, test


def test_a_regime_s_own_batch_is_the_grid_s_and_the_evaluation_s():
    regime_pilot.define("batch-64", "--model resnet8 --augment none --batch-size 64 --epochs 2")
    try:
        runs, steps = timescale_study.grid_runs("batch-64", (1.0,), (100,))
        assert {run[5] for run in runs} == {64}
        assert steps == 2 * (13_500 // 64)  # whole batches of the 13,500 training images
        name = timescale_study.run_name
        assert name("grid", "batch-64", "none", None, 100, 64, 64) == "grid_batch-64_none_s100"
        assert name("batch", "batch-64", "none", None, 200, 32, 64).endswith("_s200_b32")
    finally:
        del regime_pilot.REGIMES["batch-64"]


def _pinning(tmp_path, commands, **given):
    args = argparse.Namespace(regime=None, margin=None, define=[], commit=False, pilot="none")
    vars(args).update(given)
    tmp_path.mkdir()
    (tmp_path / "regime.json").write_text(json.dumps(dict(regime="noaug-13500", testable=True)))
    for i, command in enumerate(commands):
        recorded_runs.append_row(str(tmp_path / "study.csv"), ["regime", "run", "command"],
                                 dict(regime="noaug-13500", run=f"r{i}", command=command))  # fmt: skip
    return timescale_study.pinned_regime(args, str(tmp_path))


def test_a_study_pinned_before_options_were_kept_gets_them_from_its_rows(tmp_path):
    options = regime_pilot.REGIMES["noaug-13500"]
    ran = f"keras-normloss train --preset fashion-mnist-small --method none --seed 100 {options}"
    assert _pinning(tmp_path / "a", [ran + " --output x"]) == ("noaug-13500", 0.005)
    pinned = json.loads((tmp_path / "a" / "regime.json").read_text())
    assert pinned == dict(regime="noaug-13500", testable=True, options=options, margin=0.005)
    # A row that ran otherwise, a margin other than the pinned, a regime redefined: refused.
    other = ran.replace("--epochs 20", "--epochs 30")
    assert _pinning(tmp_path / "b", [ran, other]) is None
    assert _pinning(tmp_path / "c", [ran], margin=0.003) is None
    assert _pinning(tmp_path / "d", [ran], define=[["noaug-13500", "--epochs 2"]]) is None
    assert _pinning(tmp_path / "e", [ran], regime="cropflip-3000") is None


def test_the_choice_is_the_lowest_mean_validation_error_over_the_tuning_seeds(tmp_path):
    rows, _ = _synthetic_study(tmp_path)
    choices = timescale_study.choose(rows, (100, 101, 102))
    assert choices == {"normloss": dict(factor=0.001, fraction=1.0),
                       "weight-decay": dict(factor=0.001, fraction=1.0)}  # fmt: skip
    assert timescale_study.choose(rows, (100, 101, 102, 103)) is None  # a tuning seed missing


def test_the_report_is_recomputed_from_the_rows_by_hand(tmp_path):
    rows, test = _synthetic_study(tmp_path)
    (tmp_path / "regime.json").write_text(json.dumps(dict(regime="noaug-13500", testable=True)))
    chosen = dict(factor=0.001, fraction=1.0)
    (tmp_path / "choices.json").write_text(json.dumps({"normloss": chosen, "weight-decay": chosen}))
    written = timescale_report.write(str(tmp_path), rows)
    text = (tmp_path / "study.md").read_text()
    seeds = sorted(test)
    d = np.array([test[s]["normloss"] - test[s]["weight-decay"] for s in seeds])
    half = 2.776 * d.std(ddof=1) / np.sqrt(5)
    assert (f"Norm Loss − weight decay {100 * d.mean():+.2f} points, 95 % interval "
            f"[{100 * (d.mean() - half):+.2f}, {100 * (d.mean() + half):+.2f}], n = 5") in text  # fmt: skip
    # The verdict on "competitive", by the two one-sided tests worked with scipy (margin 0.5).
    from scipy import stats

    se = d.std(ddof=1) / np.sqrt(5)
    p_tost = max(stats.t.sf((d.mean() + 0.005) / se, 4), stats.t.cdf((d.mean() - 0.005) / se, 4))
    verdict = "shown: better" if d.mean() + half < 0 else "shown: equivalent within the margin"
    assert p_tost < 0.05
    assert f"**Competitive with weight decay** (test error): {verdict}: Norm Loss" in text
    # The factor spread: Norm Loss's per-seed range 0.2, 0.3 and 0.4 points, weight decay's 1.
    spread = np.array([0.2, 0.3, 0.4])
    assert (f"normloss: test-error spread over the grid {spread.mean():.2f} ± "
            f"{4.303 * spread.std(ddof=1) / np.sqrt(3):.2f} (n = 3)") in text  # fmt: skip
    factor = spread - 1.0
    low = factor.mean() - 4.303 * factor.std(ddof=1) / np.sqrt(3)
    assert low < factor.mean() + 4.303 * factor.std(ddof=1) / np.sqrt(3) < 0  # so: shown
    assert ("**Less sensitive to the factor** (spread of test error over the grid's timescales "
            f"0.1–10 of the run, per tuning seed): shown: Norm Loss − weight decay "
            f"{factor.mean():+.2f} points, 95 % interval [{low:+.2f}, ") in text  # fmt: skip
    # Convergence: per seed k = 0..4, Norm Loss − weight decay is (−0.1 + 0.01·k)·mean(1/e) over
    # the ten epochs (the 0.001·seed cancels), wholly below 0; Norm Loss − none (0.05 + 0.01·k)·H.
    h = np.mean(1 / np.arange(1, 11))
    ks = np.arange(5)
    for name, d in (("weight decay", (-0.1 + 0.01 * ks) * h), ("`none`", (0.05 + 0.01 * ks) * h)):
        half = 2.776 * d.std(ddof=1) / np.sqrt(5)
        assert (f"Norm Loss − {name} {d.mean():+.3f}, 95 % interval [{d.mean() - half:+.3f}, "
                f"{d.mean() + half:+.3f}], n = 5") in text  # fmt: skip
    assert -0.08 * h + 2.776 * 0.01 * h * ks.std(ddof=1) / np.sqrt(5) < 0  # so: shown
    assert "at the chosen factors): shown: Norm Loss − weight decay " in text
    # The mechanism: Norm Loss's effective rate spans log10(1.1) decades, weight decay's 2-2.2.
    decades = np.log10(1.1) - np.array([2.0, 2.1, 2.2])
    assert (f"per tuning seed): shown: Norm Loss − weight decay {decades.mean():+.2f} decades, "
            "95 % interval") in text  # fmt: skip
    angles = np.log10(1.2) - np.array([1.0, 1.1, 1.2])
    assert ("per tuning seed, Norm Loss − weight decay: "
            f"{angles.mean():+.2f} decades, 95 % interval [") in text  # fmt: skip
    assert "(the 95 % interval lies below 0; unadjusted)" in text
    # Holm over the three comparisons: raw p from scipy's paired t-test (an implementation
    # apart from the module's), then Holm by hand: sorted ascending, times 3, 2, 1, made
    # non-decreasing.
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
    assert "| none | 1.200 ± 0.000 (n = 5) | 0.011 ± 0 (n = 5) | 0.07 ± 0 (n = 5) |" in text
    assert {os.path.basename(p) for p in written} == {
        "study.md", "error_vs_timescale.png", "grid_norms.png", "paired.png", "convergence.png",
        "dynamics.png", "error_vs_batch.png",
    }  # fmt: skip
    assert "not reached" in text
    # The batch claim: Norm Loss's spread 0.5, 0.6 and 0.7 points against weight decay's 2.
    assert ("**Less sensitive to the batch size** (spread of test error over batches 32–512, the "
            "same epochs, lr scaled with the batch, per seed): shown: Norm Loss − weight decay "
            "-1.40 points") in text  # fmt: skip
    assert "| method | batch 32 | batch 128 | batch 512 | spread over batches |" in text
    assert "error_vs_batch.png" in text


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_tiny_study_runs_chooses_evaluates_reports_and_resumes(tmp_path):
    pilot = tmp_path / "pilot.csv"
    # A regime of the user's own (the pilot's rows ran it), pinned at the study's first start.
    tiny = "--model resnet8 --augment none --train-subset 512 --epochs 2 --steps-per-epoch 2"
    rows = [_pilot_row("tiny", "none", "", s, 0.001, 0.1, 0.1) for s in (0, 1, 2)]
    rows += [_pilot_row("tiny", "weight-decay", "0.01", s, 0.01, 0.09, 0.09 - 0.001 * s)
             for s in (0, 1, 2)]  # fmt: skip
    for row in rows:
        row["command"] = (f"keras-normloss train --preset fashion-mnist-small --method "
                          f"{row['method']} --seed {row['seed']} {tiny} --output x")  # fmt: skip
    with open(pilot, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out, docs = tmp_path / "runs", tmp_path / "docs"
    args = [sys.executable, str(BENCHMARKS / "timescale_study.py"), "--output", str(out)]
    args += ["--docs", str(docs), "--pilot", str(pilot), "--fractions", "1"]
    args += ["--tuning-seeds", "100", "--evaluation-seeds", "200", "201"]
    args += ["--batches", "64", "--batch-seeds", "200"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([*args, "--define", "tiny", tiny], capture_output=True, text=True,
                          env=env, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = recorded_runs.read_rows(docs / "study.csv")
    assert [(r["phase"], r["method"], r["seed"]) for r in rows] == [
        ("grid", "none", "100"), ("grid", "normloss", "100"), ("grid", "weight-decay", "100"),
        ("evaluation", "none", "200"), ("evaluation", "normloss", "200"),
        ("evaluation", "weight-decay", "200"), ("evaluation", "none", "201"),
        ("evaluation", "normloss", "201"), ("evaluation", "weight-decay", "201"),
        ("batch", "none", "200"), ("batch", "normloss", "200"), ("batch", "weight-decay", "200"),
        ("exploratory", "weight-decay-kernels", "200"),
        ("exploratory", "weight-decay-kernels", "201"),
    ]  # fmt: skip
    assert [r["batch_size"] for r in rows] == ["128"] * 9 + ["64"] * 3 + ["128"] * 2
    assert "--batch-size 64" in rows[11]["command"] and rows[11]["steps"] == "4"
    assert rows[-1]["command"].endswith(
        f"--method weight-decay --seed 201 {tiny} --weight-decay-on kernels --factor "
        f"{rows[-1]['factor']} --output exploratory_tiny_weight-decay-kernels_f"
        f"{rows[-1]['factor']}_s201"
    )
    choices = json.loads((docs / "choices.json").read_text())
    assert rows[-1]["factor"] == f"{choices['weight-decay']['factor']:.3g}"  # the arm's factor
    regime = json.loads((docs / "regime.json").read_text())
    assert choices["regime"] == regime["regime"] == "tiny" and regime["testable"] is True
    assert regime["options"] == tiny and regime["margin"] == 0.005
    for row in rows:
        assert row["commit"] and row["machine"] and str(tmp_path) not in row["command"]
        assert tiny in row["command"]
        assert (docs / "per-run" / row["run"] / "dynamics.csv.gz").exists()
    assert float(rows[1]["timescale_fraction"]) == pytest.approx(1.0, rel=0.05)
    text = (docs / "study.md").read_text()
    assert "Competitive with weight decay" in text and "n = 2" in text
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)  # pinned
    assert (
        again.returncode == 0 and "[grid" not in again.stdout and "[evaluation" not in again.stdout
    )
    assert len(recorded_runs.read_rows(docs / "study.csv")) == 14


def test_competitive_waits_for_three_seeds_before_calling_the_regime_untestable(tmp_path):
    def evaluation(seeds, decay_above_none):
        rows = []
        for s in seeds:
            errors = {"none": 0.100 + 0.001 * s % 3, "normloss": 0.110 + 0.0005 * (s % 2)}
            errors["weight-decay"] = errors["none"] + decay_above_none
            rows += [_study_row("evaluation", m, "", "", s, 0.1, e) for m, e in errors.items()]
        return timescale_study.comparisons(rows)

    (tmp_path / "choices.json").write_text(json.dumps(
        {m: dict(factor=0.001, fraction=0.3) for m in timescale_study.COMPARED}))  # fmt: skip
    # Two seeds, weight decay no better than none: too few to call the regime untestable.
    early = timescale_report._competitive(str(tmp_path), evaluation((200, 201), 0.002))
    assert early.startswith("not resolved (fewer than 3 paired seeds): Norm Loss − weight decay")
    late = timescale_report._competitive(str(tmp_path), evaluation(range(200, 205), 0.002))
    assert late.startswith("not testable here (weight decay did not beat `none` in the evaluation")
    # Weight decay 1 point better than none, Norm Loss 0.6 or 1.2 points above it: worse by more
    # than the margin (the 90 % interval from +0.53); the one-sided p of "a difference ≤ +0.5
    # points" (about 0.04) is worked here with scipy.
    rows, d = [], []
    for s in range(200, 205):
        none = 0.100 + 0.001 * (s % 3)
        errors = {
            "none": none,
            "weight-decay": none - 0.01,
            "normloss": none - 0.004 + 0.006 * (s % 2),
        }
        rows += [_study_row("evaluation", m, "", "", s, 0.1, e) for m, e in errors.items()]
        d.append(errors["normloss"] - errors["weight-decay"])
    worse = timescale_report._competitive(str(tmp_path), timescale_study.comparisons(rows))
    assert worse.startswith("not shown: worse by more than the margin: Norm Loss − weight decay")
    from scipy import stats

    d = np.array(d)
    p = stats.t.sf((d.mean() - 0.005) / (d.std(ddof=1) / np.sqrt(5)), 4)
    assert f"one-sided test against a difference ≤ +0.5 points p = {p:.3f}" in worse


def test_the_batch_claim_says_how_far_its_phase_has_gone(tmp_path):
    rows, _ = _synthetic_study(tmp_path)
    (tmp_path / "regime.json").write_text(json.dumps(dict(regime="noaug-13500", testable=True)))
    chosen = dict(factor=0.001, fraction=1.0)
    (tmp_path / "choices.json").write_text(json.dumps({"normloss": chosen, "weight-decay": chosen}))
    before = [r for r in rows if r["phase"] != "batch"]
    begun = before + [r for r in rows if r["phase"] == "batch"][:2]  # one seed, too few cells
    for some, words in ((before, "has not run yet"), (begun, "is under way: 2 of its runs so far")):
        timescale_report.write(str(tmp_path), some)
        text = (tmp_path / "study.md").read_text()
        assert f"- **Less sensitive to the batch size**: pending (the batch phase {words})." in text


def test_the_kernels_only_arm_runs_on_the_evaluation_seeds_and_is_compared_by_hand(tmp_path):
    chosen = dict(factor=0.0032, fraction=0.3)
    runs = timescale_study.kernels_only_runs({"weight-decay": chosen}, (200, 201), 128)
    assert runs == [
        ("exploratory", "weight-decay-kernels", 0.0032, 0.3, s, 128) for s in (200, 201)
    ]
    trained, extra = timescale_study.AS_TRAINED["weight-decay-kernels"]
    arguments = regime_pilot.run_arguments("noaug-13500", trained, 0.0032, 200, extra)
    assert arguments[arguments.index("--method") + 1] == "weight-decay"
    assert arguments[-4:] == ["--weight-decay-on", "kernels", "--factor", "0.0032"]

    rows, test = _synthetic_study(tmp_path)
    (tmp_path / "regime.json").write_text(json.dumps(dict(regime="noaug-13500", testable=True)))
    (tmp_path / "choices.json").write_text(json.dumps(
        {"normloss": dict(factor=0.0016, fraction=0.3), "weight-decay": chosen}))  # fmt: skip
    # The arm on four of the five evaluation seeds: weight decay's error plus 0.3 points and a
    # seed's share; every comparison is paired over those four.
    kernels = {s: test[s]["weight-decay"] + 0.003 + 0.0005 * (s % 3) for s in (200, 201, 202, 203)}
    rows += [_study_row("exploratory", "weight-decay-kernels", "0.0032", "0.3", s, 0.1, e, norm=1.3)
             for s, e in kernels.items()]  # fmt: skip
    for row in rows[-4:]:  # training cross-entropy 1.2/epoch (+ the seed's 0.001·seed)
        _keep(tmp_path, row["run"], "metrics.csv", [
            dict(epoch=e, cross_entropy=1.2 / e + 0.001 * int(row["seed"])) for e in range(1, 11)
        ])  # fmt: skip
    from scipy import stats

    found = timescale_study.kernels_only_comparisons(rows)
    p = {}
    for first, second in (("normloss", "weight-decay-kernels"),
                          ("weight-decay-kernels", "weight-decay"),
                          ("weight-decay-kernels", "none")):  # fmt: skip
        pick = lambda m: np.array([kernels[s] if m == "weight-decay-kernels" else test[s][m]
                                   for s in sorted(kernels)])  # fmt: skip
        d = pick(first) - pick(second)
        got = found[f"{first} − {second}"]
        assert got["n"] == 4 and got["mean"] == pytest.approx(d.mean())
        half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
        assert got["low"] == pytest.approx(d.mean() - half)
        assert got["high"] == pytest.approx(d.mean() + half)
        p[first, second] = stats.ttest_1samp(d, 0).pvalue
    # Holm over these three: the smallest p times 3, the next times 2 (kept non-decreasing).
    order = sorted(p, key=p.get)
    expected = np.maximum.accumulate([min(1, (3 - i) * p[k]) for i, k in enumerate(order)])
    for key, value in zip(order, expected):
        assert found[" − ".join(key)]["p_holm"] == pytest.approx(value)
    # The evaluation's own family is untouched by the arm.
    assert timescale_study.comparisons(rows) == timescale_study.comparisons(
        [r for r in rows if r["phase"] != "exploratory"]
    )
    timescale_report.write(str(tmp_path), rows)
    text = (tmp_path / "study.md").read_text()
    assert "## Exploratory: weight decay on the kernels only" in text
    assert "the factor chosen for it on every parameter (λ = 0.0032," in text
    d = np.array([kernels[s] - test[s]["weight-decay"] for s in sorted(kernels)])
    assert f"| weight-decay-kernels − weight-decay | {100 * d.mean():+.2f} |" in text
    assert "| weight-decay-kernels | " in text and "1.300 ± 0.000 (n = 4)" in text
    # Convergence against the arm: Norm Loss's (1 + 0.01·k)/epoch against 1.2/epoch, k = 0..3.
    ce = (1.0 + 0.01 * np.arange(4) - 1.2) * np.mean(1 / np.arange(1, 11))
    half = stats.t.ppf(0.975, 3) * ce.std(ddof=1) / 2
    assert (f"Norm Loss − weight-decay-kernels: {ce.mean():+.3f}, 95 % interval "
            f"[{ce.mean() - half:+.3f}, {ce.mean() + half:+.3f}], n = 4") in text  # fmt: skip
