"""The benchmark scripts run (tiny settings); their numbers are not asserted."""

import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args, expected",
    [
        (
            "overhead.py",
            [
                "--models",
                "resnet20",
                "--batch-size",
                "8",
                "--rounds",
                "2",
                "--steps",
                "1",
                "--warmup",
                "1",
            ],
            "| resnet20 |",
        ),
        (
            "models.py",
            ["--batch-size", "2", "--image-size", "64", "--rounds", "1", "--steps", "1"],
            "ratio ours / keras.applications",
        ),
        (
            "input_pipeline.py",
            ["--batch-size", "16", "--batches", "5", "--steps", "2", "--mock-examples", "1000"],
            "pipeline / training =",
        ),
    ],
)
def test_benchmark_runs_and_prints_its_table(script, args, expected, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TFDS_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expected in proc.stdout


@pytest.mark.slow
def test_results_grid_runs_end_to_end_and_draws_its_figures(tmp_path):
    """benchmarks/fashion_mnist_grid.py at tiny settings, on the shipped Fashion-MNIST subset:
    two methods, one factor, two batch sizes, one seed (4 runs of 2 steps)."""
    docs = tmp_path / "docs"
    args = ["--dataset", "fashion_mnist_mini", "--images-per-epoch", "16", "--epochs", "1"]
    args += ["--seeds", "0", "--methods", "none", "normloss", "--factors", "0.01"]
    args += ["--base-batch", "8", "--other-batches", "16", "--peers"]
    args += ["--output", str(tmp_path / "grid"), "--docs", str(docs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fashion_mnist_grid.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (docs / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header, none and normloss at batches 8 and 16
    for figure in ("error_vs_factor", "error_vs_batch", "norms", "seeds"):
        assert (docs / f"{figure}.png").stat().st_size > 10_000
    table = (docs / "table.md").read_text()
    assert "| normloss | 0.01 | 16 |" in table and "| none | — | 8 |" in table
