"""benchmarks/fashion_mnist_study.py: the whole study end to end at a tiny budget on the shipped
subset (its statistics: tests/test_paired_stats.py)."""

import csv
import hashlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parent.parent / "benchmarks" / "fashion_mnist_study.py"
sys.path.insert(0, str(SCRIPT.parent))  # the script imports its neighbour paired_stats


def _study():
    spec = importlib.util.spec_from_file_location("fashion_mnist_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The study script, with the sweep's runs in the script's own process (tests/in_process.py): one
# TensorFlow start instead of twelve. Not in pytest's process: the study's --deterministic recipe
# turns TensorFlow's op determinism on for good, and Keras then compiles no later model with XLA.
_IN_ONE_PROCESS = f"""
import os, runpy, sys, types
sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
from in_process import InProcess
from keras_normloss.training import sweep
sweep.multiprocessing = types.SimpleNamespace(get_context=lambda method: InProcess)
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python SCRIPT` does
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_study_runs_end_to_end_resumes_and_chooses_on_validation(tmp_path):
    """Every phase at 2 steps per run on the shipped subset: 11 runs, then a second call that
    runs nothing. Run from the repository's root without `--docs`, as a user would: the report
    goes to the output's report/, the choice is made from these runs (a shipped choices.json
    was once reused), and the repository's recorded results are not touched (they once were,
    65 lines of study.csv to 6)."""
    out = tmp_path / "study"
    docs = out / "report"
    args = ["--dataset", "fashion_mnist_mini", "--model", "resnet8", "--epochs", "1"]
    args += ["--steps-per-epoch", "2", "--validation-split", "0.1", "--base-batch", "32"]
    args += ["--factors", "0.001", "0.01", "--seeds", "0", "1", "--batches", "64"]
    args += ["--peers", "wrs", "--peer-seeds", "0", "--output", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    recorded = {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (SCRIPT.parent.parent / "docs" / "results").rglob("*")
        if path.is_file()
    }

    def run():
        proc = subprocess.run(
            [sys.executable, "-c", _IN_ONE_PROCESS, str(SCRIPT), *args], capture_output=True,
            text=True, env=env, timeout=900, cwd=SCRIPT.parent.parent,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    printed = run()
    assert {
        path: hashlib.sha256(path.read_bytes()).hexdigest() for path in recorded
    } == recorded and recorded
    assert json.loads((out / "choices.json").read_text()) == json.loads(
        (docs / "choices.json").read_text()
    )
    assert "phase 5/5 (peers)" in printed and "chosen on validation" in printed
    with open(docs / "study.csv") as f:
        rows = list(csv.DictReader(f))
    # factors: none + 2 x 2 (seed 0); seeds: 3 more (seed 1); batch 64: normloss and weight-decay;
    # peers: wrs. Batches of 32 and more: the runs are mostly evaluation (1,000 test images)
    assert len(rows) == 11
    assert all(r["validation_error"] and r["final_test_error"] for r in rows)
    assert {r["dataset"] for r in rows} == {"fashion_mnist_mini"}
    choices = json.loads((docs / "choices.json").read_text())
    factor_rows = [r for r in rows if r["seed"] == "0" and r["batch_size"] == "32"]
    for method in ("normloss", "weight-decay"):
        errors = {
            float(r["factor"]): float(r["validation_error"])
            for r in factor_rows
            if r["method"] == method
        }
        assert choices[method] == min(errors, key=lambda f: (errors[f], f))
    paired = json.loads((docs / "paired.json").read_text())["normloss_minus_weight_decay"]
    assert paired["n"] == 2 and paired["seeds"] == [0, 1]
    others = json.loads((docs / "paired.json").read_text())["minus_normloss"]
    assert set(others) == {"none", "weight-decay", "wrs"}
    assert others["wrs"] is None  # one peer seed: no interval yet
    assert others["none"]["seeds"] == [0, 1]
    turned = [-d for d in paired["differences"]]
    assert others["weight-decay"]["differences"] == pytest.approx(turned)
    none = {int(r["seed"]): float(r["final_test_error"]) for r in rows if r["method"] == "none"}
    normloss = {
        int(r["seed"]): float(r["final_test_error"])
        for r in rows
        if r["method"] == "normloss" and float(r["factor"]) == choices["normloss"]
        and r["batch_size"] == "32"
    }  # fmt: skip
    assert others["none"]["differences"] == pytest.approx([none[s] - normloss[s] for s in (0, 1)])
    for figure in ("error_vs_factor", "error_vs_batch", "convergence"):
        assert (docs / f"{figure}.png").stat().st_size > 10_000
    again = run()  # resumes: every run is finished, nothing trains
    assert "11 of 11 runs finished" in again and "data: " not in again
    # none and the chosen factors at seed 0 belong to phases 1 and 3: listed twice
    assert again.count("finished already") == 11 + 3
