"""benchmarks/rerun_cell.py: a recorded row found and its code checked, the re-run's numbers
compared with the row and the kept metrics epoch by epoch (against differences worked by hand),
and the report of the comparisons. The re-run itself, end to end, is in test_regime_pilot."""

import csv
import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import recorded_runs  # noqa: E402
import rerun_cell  # noqa: E402

RUN = "grid_r_normloss_f0.001_s1"
COMMAND = f"keras-normloss train --preset fashion-mnist-small --method normloss --output {RUN}"


def _metrics(path, test_errors, norms):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", *rerun_cell.PER_EPOCH])
        writer.writeheader()
        for epoch, (test, norm) in enumerate(zip(test_errors, norms), 1):
            writer.writerow(dict(epoch=epoch, error=0.01, cross_entropy=0.05,
                                 validation_error=0.09, test_error=test, norm_mean=norm))  # fmt: skip


def _study(tmp_path, commit="0123456789abcdef"):
    """A study's docs with one recorded row and its kept metrics: test errors 0.2 then 0.1."""
    docs, recorded = tmp_path / "docs", tmp_path / "recorded"
    docs.mkdir()
    recorded.mkdir()
    _metrics(recorded / "metrics.csv", [0.2, 0.1], [1.5, 1.4])
    kept = recorded_runs.keep_run_files(str(recorded), str(docs))
    (docs / "per-run" / "recorded").rename(docs / "per-run" / RUN)
    assert kept
    row = dict(run=RUN, commit=commit, command=COMMAND, final_train_error="0.01",
               final_train_cross_entropy="0.05", validation_error="0.09",
               final_test_error="0.1", final_norm_mean="1.4")  # fmt: skip
    recorded_runs.append_row(str(docs / "study.csv"), list(row), row)
    return docs, row


def _rerun_dir(tmp_path, test_errors, norms):
    run_dir = tmp_path / "rerun" / RUN
    run_dir.mkdir(parents=True)
    _metrics(run_dir / "metrics.csv", test_errors, norms)
    results = dict(final_test_error=test_errors[-1], final_validation_error=0.09,
                   backend="tensorflow", versions=dict(keras="3.x"))  # fmt: skip
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def test_the_rerun_is_compared_with_the_row_and_each_kept_epoch(tmp_path):
    docs, row = _study(tmp_path)
    run_dir = _rerun_dir(tmp_path, [0.25, 0.1003], [1.5, 1.3])
    finals, epochs = rerun_cell.compare(
        row, str(run_dir), rerun_cell.read_results(run_dir), str(docs)
    )
    assert finals["final_test_error"] == (0.1, 0.1003)
    assert finals["final_norm_mean"] == (1.4, 1.3)
    assert finals["validation_error"] == (0.09, 0.09)
    # By hand: |0.25 − 0.2| at epoch 1 beats |0.1003 − 0.1| at epoch 2; norms differ at epoch 2.
    assert epochs["test_error"] == pytest.approx(0.05)
    assert epochs["norm_mean"] == pytest.approx(0.1)
    assert epochs["error"] == 0 and epochs["cross_entropy"] == 0
    with pytest.raises(SystemExit, match="1 epochs against the kept 2"):
        short = _rerun_dir(tmp_path / "short", [0.1], [1.4])
        rerun_cell.compare(row, str(short), rerun_cell.read_results(short), str(docs))


def test_the_report_says_whether_every_recorded_digit_came_back(tmp_path):
    docs, row = _study(tmp_path)
    same = _rerun_dir(tmp_path / "same", [0.2, 0.1], [1.5, 1.4])
    other = _rerun_dir(tmp_path / "other", [0.2, 0.1003], [1.5, 1.4])
    for run_dir in (same, other):
        results = rerun_cell.read_results(run_dir)
        finals, epochs = rerun_cell.compare(row, str(run_dir), results, str(docs))
        rerun_cell.record(str(docs), row, results, finals, epochs, 60, "abcdef0")
    lines = recorded_runs.read_rows(docs / "reruns.csv")
    assert [rerun_cell.identical(line) for line in lines] == [True, False]
    assert lines[0]["machine"].endswith("tensorflow backend; keras 3.x")
    text = (docs / "reruns.md").read_text()
    assert "| 10.00 → 10.00 |" in text and "| 10.00 → 10.03 |" in text
    assert "| 0.03 | no |" in text and "| 0.00 | yes |" in text


def test_a_row_whose_code_no_commit_holds_cannot_be_rerun(tmp_path):
    docs, _ = _study(tmp_path, commit="0123456789abcdef+modified")
    with pytest.raises(SystemExit, match="no commit holds"):
        rerun_cell.find_row(str(docs / "study.csv"), RUN)
    with pytest.raises(SystemExit, match="no run named"):
        rerun_cell.find_row(str(docs / "study.csv"), "another")


def test_a_rerun_never_reuses_a_run_folder_nor_an_unknown_commit(tmp_path):
    (tmp_path / RUN).mkdir()  # `train` would call it finished, or resume it
    with pytest.raises(SystemExit, match="exists; give another --output"):
        rerun_cell.rerun(dict(command=COMMAND), str(tmp_path / "clone"), str(tmp_path))
    if recorded_runs.repository() is None:
        pytest.skip("not in a git checkout: no commit to clone")
    with pytest.raises(SystemExit, match="is not in this repository"):
        rerun_cell.clean_clone("0" * 40, str(tmp_path))
