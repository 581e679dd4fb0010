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
            "models.py",
            ["--batch-size", "2", "--image-size", "32", "--rounds", "1", "--steps", "1"],
            "ratio ours / keras.applications",
        ),
        (
            "backends.py",
            # overhead.py on both backends, one method of each kind: penalty, constraint,
            # epoch projection, reparametrization, optimizer
            ["--models", "resnet8", "--methods", "normloss", "wrs", "pbwn-epoch", "wn"]
            + ["normloss-decoupled"]
            + ["--batch-size", "4", "--rounds", "1", "--steps", "1", "--warmup", "1"],
            "resnet8: JAX / TensorFlow =",
        ),
        (
            "norm_equilibrium.py",
            ["--methods", "weight-decay", "normloss-decoupled", "--factors", "1e-3"]
            + ["--steps", "12", "--measure", "4"],
            "measured/predicted",
        ),
        (
            "input_pipeline.py",
            ["--batch-size", "16", "--batches", "5", "--steps", "2", "--mock-examples", "1000"],
            "pipeline / training =",
        ),
    ],
)
@pytest.mark.subprocess
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
