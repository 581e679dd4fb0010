import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import two_replica_strategy

from keras_normloss import NormLoss


def _model(weights=None):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(8, 3, kernel_regularizer=NormLoss(0.05)),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(3, kernel_regularizer=NormLoss(0.05)),
        ]
    )
    if weights is not None:
        model.set_weights(weights)
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def test_mirrored_fit_step_equals_one_device():
    """Keras >= 3.8 divides regularization losses by the replica count under
    a strategy, so the summed gradient carries the penalty exactly once."""
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py should have made 2 logical CPUs"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 3, size=(16,))
    keras.utils.set_random_seed(0)
    initial = _model().get_weights()

    single = _model(initial)
    single.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    strategy = two_replica_strategy()
    with strategy.scope():
        mirrored = _model(initial)
    mirrored.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    for a, b, w0 in zip(single.get_weights(), mirrored.get_weights(), initial):
        assert not np.allclose(a, w0)  # the step moved the weights
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


def _start_train(tmp_path, name, strategy, *extra):
    """Starts a one-step `train` run of ResNet-8 in a fresh process with two logical CPUs;
    `_train_weights` waits for it.

    In a fresh process, as users run it. In one process, a second
    MirroredStrategy whose model has synchronized BatchNormalization fails
    with "Shape mismatch in the collective instance 100" after an earlier
    MirroredStrategy has run (TF 2.21, Keras 3.15); `sweep` therefore runs
    each run in a process of its own.
    """
    out = tmp_path / name
    script = os.path.join(os.path.dirname(__file__), "two_cpu_devices.py")
    args = ["--preset", "quick", "--dataset", "synthetic", "--model", "resnet8"]
    args += ["--batch-size", "16", "--epochs", "1", "--steps-per-epoch", "1"]
    proc = subprocess.Popen(
        [sys.executable, script, "train", *args, "--strategy", strategy, "--output", str(out)]
        + list(extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


def _train_weights(started):
    """The weights and results.json of a run `_start_train` started, once it has ended."""
    proc, out = started
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    results = json.load(open(out / "results.json"))
    return keras.saving.load_model(out / "model.keras").get_weights(), results


def _max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.mark.slow
@pytest.mark.subprocess
def test_train_mirrored_equals_one_device_with_synchronized_bn(tmp_path):
    """Synchronized BN makes a 2-replica step match one device to float32
    rounding (Keras computes synced moments as E[x^2] - E[x]^2, summed in
    another order: 2e-6 seen after a ResNet-8 step, 3e-5 after a ResNet-20
    step); per-replica BN statistics differ by orders of magnitude more
    (8e-3 after the ResNet-8 step)."""
    # Side by side: each process spends most of its time starting TensorFlow on one core.
    started = [
        _start_train(tmp_path, "one", "one-device", "--synchronized-bn"),
        _start_train(tmp_path, "two", "mirrored", "--synchronized-bn"),
        _start_train(tmp_path, "two-local", "mirrored"),
    ]
    (single, r1), (synced, r2), (local, _) = [_train_weights(s) for s in started]
    assert (r1["device"]["replicas"], r2["device"]["replicas"]) == (1, 2)
    assert _max_difference(single, synced) < 2e-4
    assert _max_difference(single, local) > 10 * _max_difference(single, synced)
    # NormDynamics under MirroredStrategy measures the step one device takes.
    one, two = r1["dynamics"]["last"]["conv"], r2["dynamics"]["last"]["conv"]
    assert r2["dynamics"]["last_step"] == 1 and two["channels"] == one["channels"]
    assert two["norm_mean"] == pytest.approx(one["norm_mean"], rel=1e-5)
    assert two["angular_update"] == pytest.approx(one["angular_update"], rel=1e-2)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.subprocess
def test_multi_worker_training_on_localhost(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        out = tmp_path / f"worker{index}"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "keras_normloss",
                    "train",
                    "--preset",
                    "quick",
                    "--dataset",
                    "synthetic",
                    "--model",
                    "resnet8",
                    "--batch-size",
                    "16",
                    "--epochs",
                    "2",
                    "--steps-per-epoch",
                    "3",
                    "--strategy",
                    "multiworker",
                    "--output",
                    str(out),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
    chief = tmp_path / "worker0"
    results = json.load(open(chief / "results.json"))
    assert results["device"]["strategy"] == "multiworker"
    assert results["device"]["replicas"] == 2 and results["epochs"] == 2
    assert not (tmp_path / "worker1").exists()  # only the chief writes


def _pbwn_epoch_fit(strategy, initial, x, y):
    from keras_normloss import methods

    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((6, 6, 3)),
                keras.layers.Conv2D(8, 3, name="conv"),
                keras.layers.ReLU(),
                keras.layers.Flatten(),
                keras.layers.Dense(3, name="classifier"),
            ]
        )
        model.set_weights(initial)
        report = methods.apply(model, "pbwn-epoch")
        model.compile(
            keras.optimizers.SGD(0.1, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    norms_after_epoch_1 = []

    class Spy(keras.callbacks.Callback):  # runs after the projection, which comes first
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                kernel = np.array(model.get_layer("conv").kernel).reshape(-1, 8)
                norms_after_epoch_1.append(np.linalg.norm(kernel, axis=0))

    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=report.callbacks + [Spy()],
    )
    np.testing.assert_allclose(norms_after_epoch_1[0], 1.0, rtol=1e-5)  # projected
    return model.get_weights()


def test_pbwn_epoch_under_mirrored_strategy_equals_one_device():
    """pbwn-epoch's callback projects mirrored kernels from a callback; under a
    MirroredStrategy (any GPU machine's default) it must run and give the
    one-device result."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 3, size=(16,))
    keras.utils.set_random_seed(0)
    initial = [2.0 * w for w in _model().get_weights()]  # conv norms far from 1
    single = _pbwn_epoch_fit(tf.distribute.get_strategy(), initial, x, y)
    mirrored = _pbwn_epoch_fit(two_replica_strategy(), initial, x, y)
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
