"""`keras-normloss train` on JAX, in subprocesses (this process runs Keras on TensorFlow): a run
end to end with TensorFlow blocked from import, SIGTERM and kill -9 resumed to the uninterrupted
run's weights, two host devices equal to one, and each kind of method of the table.

Each subprocess compiles its own XLA programs; to keep the suite short they share a persistent
compilation cache, and XLA's CPU backend optimises little (it changes speed, not what the tests
compare: every run of a comparison uses the same flags).
"""

import csv
import glob
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_normloss import methods

# Runs `keras-normloss ARGS` as the console script does, with TensorFlow and tensorflow-datasets
# missing as on a machine without them (unless the first argument is "--with-tensorflow").
RUNNER = """
import importlib.abc, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

args = sys.argv[1:]
if args[:1] == ["--with-tensorflow"]:
    args = args[1:]
else:
    sys.meta_path.insert(0, NoTensorFlow())
if args[:1] == ["--python"]:  # a script instead of the command line
    sys.argv = args[1:]
    exec(compile(open(args[1]).read(), args[1], "exec"))
    sys.exit(0)
sys.argv = ["keras-normloss", *args]
from keras_normloss.cli import main
sys.exit(main())
"""
# ResNet-8 (the smallest registered model) on the shipped 4,000-image subset.
SMALL = [
    "--preset",
    "fashion-mnist-mini",
    "--model",
    "resnet8",
    "--batch-size",
    "16",
    "--seed",
    "3",
]
RUN = SMALL + ["--epochs", "2", "--steps-per-epoch", "4", "--deterministic"]


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax-compilation-cache"))


def _env(cache, devices=1):
    # Not conftest's KERAS_BACKEND, nor a multi-process set-up of the machine's.
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "KERAS_BACKEND" and not k.startswith("KERAS_DISTRIBUTION_")
    }
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=cache,
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="3",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} "
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
    )
    return env


def _start(args, cache, devices=1):
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, *args],
        env=_env(cache, devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc, status=0, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == status, (out[-1500:], err[-3000:])
    return out, err


def _weights(run_dir):
    return keras.saving.load_model(os.path.join(run_dir, "model.keras")).get_weights()


def _max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def _dynamics(run_dir):
    with open(os.path.join(run_dir, "dynamics.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, compilation_cache):
    """The uninterrupted run on one device with TensorFlow blocked and no --backend (a machine
    with JAX only: JAX is chosen), and the same run on two host devices with TensorFlow there
    (TensorBoard's summaries are written), side by side."""
    root = tmp_path_factory.mktemp("jax-runs")
    one, two = str(root / "one-device"), str(root / "two-devices")
    first = _start(["train", *RUN, "--output", one], compilation_cache)
    second = _start(
        ["--with-tensorflow", "train", "--backend", "jax", *RUN, "--strategy", "mirrored"]
        + ["--output", two],
        compilation_cache,
        devices=2,
    )
    return {"one": (one, *_finish(first)), "two": (two, *_finish(second))}


@pytest.mark.subprocess
def test_train_on_jax_without_tensorflow(runs):
    out_dir, out, err = runs["one"]
    results = json.load(open(os.path.join(out_dir, "results.json")))
    assert results["backend"] == "jax" and results["device"]["backend"] == "jax"
    assert results["device"]["replicas"] == 1 and results["device"]["devices"] == ["cpu:0"]
    versions = results["versions"]
    assert versions["keras"] == keras.__version__ and versions["jax"] and versions["jaxlib"]
    assert "tensorflow" not in versions and "tensorflow_datasets" not in versions
    assert results["xla_used"] is True  # Keras jits the step on JAX
    rows = _metrics(out_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        assert all(math.isfinite(float(row[k])) for k in ("loss", "test_loss", "validation_loss"))
        assert float(row["error"]) == pytest.approx(1 - float(row["accuracy"]), abs=1e-5)
    assert results["final_test_error"] == pytest.approx(float(rows[-1]["test_error"]), rel=1e-5)
    assert results["final_validation_error"] == pytest.approx(
        float(rows[-1]["validation_error"]), rel=1e-5
    )
    # No TensorBoard without TensorFlow, said once; the summary names only what was written.
    assert sorted(os.listdir(out_dir)) == [
        "config.json",
        "dynamics.csv",
        "metrics.csv",
        "model.keras",
        "results.json",
    ]
    assert out.count("no TensorBoard output") == 1
    assert (
        out.strip()
        .splitlines()[-1]
        .endswith("(results.json, metrics.csv, dynamics.csv, model.keras)")
    )
    config = json.load(open(os.path.join(out_dir, "config.json")))
    assert config["backend"] == "jax"
    # model.keras written on JAX loads here, on TensorFlow, with finite weights.
    assert all(np.all(np.isfinite(w)) for w in _weights(out_dir))


@pytest.mark.subprocess
def test_two_host_devices_equal_one_device(runs):
    """keras.distribution.DataParallel over two host devices: one SPMD program, whose step
    equals one device's (BatchNormalization's moving statistics too: under jit they are
    reductions over the global batch)."""
    one, two = runs["one"][0], runs["two"][0]
    device = json.load(open(os.path.join(two, "results.json")))["device"]
    assert device["replicas"] == 2 and device["devices"] == ["cpu:0", "cpu:1"]
    assert device["distribution"] == "DataParallel" and device["strategy"] == "mirrored"
    assert _max_difference(_weights(one), _weights(two)) < 1e-5
    assert "tensorflow" in json.load(open(os.path.join(two, "results.json")))["versions"]
    assert glob.glob(os.path.join(two, "tensorboard", "**", "*tfevents*"), recursive=True)
    a, b = _metrics(one), _metrics(two)
    for key in ("test_error", "validation_error", "norm_mean"):
        assert float(b[-1][key]) == pytest.approx(float(a[-1][key]), abs=1e-5)
    # NormDynamics under DataParallel measures the steps one device takes.
    a, b = _dynamics(one), _dynamics(two)
    assert [(r["step"], r["group"]) for r in b] == [(r["step"], r["group"]) for r in a] and a
    for x, y in zip(a, b):
        assert float(y["norm_mean"]) == pytest.approx(float(x["norm_mean"]), rel=1e-5)
        assert float(y["angular_update"]) == pytest.approx(float(x["angular_update"]), rel=1e-2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "mirrored", "--batch-size", "15"], "--batch-size 15 does not split over 2"),
        (["--strategy", "tpu"], "--strategy tpu cannot run here: JAX sees no TPU"),
        (["--strategy", "multiworker"], "set KERAS_DISTRIBUTION_JOB_ADDRESSES"),
        (["--synchronized-bn"], "--synchronized-bn is for TensorFlow's MirroredStrategy"),
    ],
)
@pytest.mark.subprocess
def test_settings_these_devices_cannot_run_are_one_line_status_2(
    tmp_path, compilation_cache, args, message
):
    proc = _start(
        ["train", *SMALL, *args, "--output", str(tmp_path / "run")], compilation_cache, devices=2
    )
    _, err = _finish(proc, status=2)
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def _wait_for(path, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def _sidecar(run_dir, epoch, step):
    return os.path.join(run_dir, "checkpoint", f"ckpt-e{epoch:05d}-s{step:07d}.json")


@pytest.mark.subprocess
def test_sigterm_and_kill_minus_nine_resume_to_the_uninterrupted_weights(
    runs, tmp_path, compilation_cache
):
    """A run stopped by SIGTERM (it saves at the step it is at) and then killed with -9 in its
    second epoch ends, resumed, with the uninterrupted run's weights: a mid-epoch checkpoint
    on JAX holds that step's weights (Keras's JAX `fit` keeps them outside the model's
    variables until it syncs), and the data stream resumes at its position."""
    out = str(tmp_path / "run")
    command = ["train", "--backend", "jax", *RUN, "--checkpoint-every", "2"]
    command += ["--keep-checkpoints", "9", "--output", out]

    proc = _start(command, compilation_cache)
    _wait_for(_sidecar(out, 0, 2), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = _finish(proc, status=143)
    assert err.strip().splitlines()[-1].startswith("keras-normloss train: stopped by SIGTERM")

    proc = _start(command, compilation_cache)
    _wait_for(_sidecar(out, 1, 2), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, "results.json"))
    # As if the kill came right after that checkpoint: the resume starts mid-epoch.
    for sidecar in glob.glob(os.path.join(out, "checkpoint", "ckpt-*.json")):
        epoch, step = map(int, re.findall(r"\d+", os.path.basename(sidecar)))
        if (epoch, step) > (1, 2):
            os.remove(sidecar)

    out_text, _ = _finish(_start(command, compilation_cache))
    assert "resuming at epoch 2, step 2" in out_text
    assert [r["epoch"] for r in _metrics(out)] == ["1", "2"]
    for got, expected in zip(_metrics(out), _metrics(runs["one"][0])):  # whole epochs' means
        for key in ("loss", "cross_entropy", "accuracy"):
            assert float(got[key]) == pytest.approx(float(expected[key]), rel=1e-5), key
    assert _max_difference(_weights(runs["one"][0]), _weights(out)) < 1e-6
    assert not os.path.exists(os.path.join(out, "checkpoint"))


METHODS_SCRIPT = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"  # before keras_normloss imports Keras
from keras_normloss import train
out, names = sys.argv[1], sys.argv[2:]
for name in names:
    config = train.make_config(
        "fashion-mnist-mini", os.path.join(out, name), method=name, model="resnet8",
        epochs=1, steps_per_epoch=2, batch_size=8, seed=1,
    )
    train.run(config, verbose=0)
"""


# Each kind of method's code path in `train` (penalty, constraint, epoch projection,
# reparametrization, decoupled optimizer): two of the kinds with more than one implementation.
# WN, ONI, OLM, SO, SRIP and Norm Loss are also checked against TensorFlow on JAX, layer by
# layer (test_reparam, test_orthogonality_penalties, test_backends); each method costs an XLA
# compilation here, and all fourteen took 2.5 minutes of the suite.
KINDS_ON_JAX = ["none", "normloss", "srip", "wrs", "pbwn-epoch", "wn", "oni", "normloss-decoupled"]


@pytest.mark.subprocess
def test_each_kind_of_method_trains_on_jax(tmp_path, compilation_cache):
    """Two steps of each kind of method, in two processes side by side (XLA compiles on one
    core)."""
    script = tmp_path / "methods.py"
    script.write_text(METHODS_SCRIPT)
    names = KINDS_ON_JAX
    kinds = {methods.get(name).kind for name in names}
    assert kinds == {methods.get(name).kind for name in methods.names()}
    halves = [names[::2], names[1::2]]
    procs = [
        _start(["--python", str(script), str(tmp_path), *half], compilation_cache)
        for half in halves
    ]
    for proc in procs:
        _finish(proc, timeout=600)
    for name in names:
        results = json.load(open(tmp_path / name / "results.json"))
        row = _metrics(tmp_path / name)[-1]
        assert results["backend"] == "jax", name
        for key in ("loss", "cross_entropy", "test_loss", "norm_mean"):
            assert math.isfinite(float(row[key])), (name, key)
        penalty = float(row["regularization_loss"])
        assert (penalty > 0) == (methods.get(name).kind == "penalty"), (name, penalty)
    # wrs projects every conv and Dense kernel onto the unit sphere after each step.
    assert float(_metrics(tmp_path / "wrs")[-1]["oblique_distance"]) < 1e-5


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_on_localhost_equal_one_device(runs, tmp_path, compilation_cache):
    """`--strategy multiworker` on JAX: `keras.distribution.initialize()` reads the
    KERAS_DISTRIBUTION_* variables (jax.distributed over loopback, CPU collectives by Gloo),
    DataParallel spans both processes' devices, and each process feeds its half of every
    batch; the chief alone writes, and its weights are one device's."""
    address = f"127.0.0.1:{_free_port()}"
    procs = []
    for index in range(2):
        env = _env(compilation_cache)
        env.update(
            KERAS_DISTRIBUTION_JOB_ADDRESSES=address,
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(index),
        )
        command = ["train", "--backend", "jax", *RUN, "--strategy", "multiworker"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RUNNER, *command, "--output", str(tmp_path / f"p{index}")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _finish(proc)
    device = json.load(open(tmp_path / "p0" / "results.json"))["device"]
    assert device["processes"] == 2 and device["replicas"] == 2
    assert device["strategy"] == "multiworker"
    assert not (tmp_path / "p1").exists()  # only the chief writes
    assert _max_difference(_weights(runs["one"][0]), _weights(tmp_path / "p0")) < 1e-5
