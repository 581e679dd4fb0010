"""Test set-up: quiet TensorFlow, two logical CPU devices, a clean Keras state."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Keras's configuration of a home of the suite's own, as a new user's: a process that blocks
# TensorFlow (the JAX-only tests) writes jax into it (`startup.record_jax_in_keras_json`), and
# must never do that to the developer's own ~/.keras.
os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="keras-normloss-tests-home-"))

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# MirroredStrategy tests need two replicas; on a CPU-only machine that means
# two logical CPU devices, which can only be configured before TensorFlow
# initialises its devices, so it happens here, at import time.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # free_memory=False: Keras's default runs a full gc.collect(), 0.3-0.4 s with TensorFlow's
    # objects on the heap, which over 1,100 tests was a fifth of the suite (5 of 27 minutes).
    # Python's own collector still runs as objects accumulate.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)  # unseeded initialisers: the same draw on every run
    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def two_replica_strategy():
    """A MirroredStrategy over the two logical CPUs that several tests can create in one process.

    With the default cross-device ops, the second MirroredStrategy of a process fails in its
    all-reduce ("Shape mismatch in the collective instance 100": TensorFlow 2.21 reuses the
    collective instance keys of the first, with other shapes). Reducing through one device uses
    no collective ops, and sums the replicas' gradients the same way.
    """
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py should have made 2 logical CPUs"
    return tf.distribute.MirroredStrategy(
        [d.name for d in devices[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


# --- tiny runs shared by the whole session ---------------------------------------------------
# Tests that only read a run's files (or damage a copy of them) share these two instead of each
# training its own. A test that changes the run copies it first (shutil.copytree).


@pytest.fixture(scope="session")
def finished_tiny_run(tmp_path_factory):
    """A finished 1-epoch, 1-step tiny run: (its directory, the `train` arguments that made it)."""
    from small_runs import tiny_run

    from keras_normloss import train

    out = tmp_path_factory.mktemp("finished") / "run"
    args = tiny_run(16) + ["--epochs", "1", "--steps-per-epoch", "1", "--output", str(out)]
    assert train.main(args) == 0
    return out, args


@pytest.fixture(scope="session")
def stopped_tiny_run(tmp_path_factory):
    """A 3-epoch tiny run stopped (as by SIGTERM) right after epoch 1's checkpoint: (its
    directory, the `train` arguments that resume it)."""
    from small_runs import tiny_run

    from keras_normloss import train
    from keras_normloss.training import faults
    from keras_normloss.training.checkpoints import Checkpointer

    out = tmp_path_factory.mktemp("stopped") / "run"
    args = tiny_run(16) + ["--epochs", "3", "--steps-per-epoch", "1", "--output", str(out)]
    save = Checkpointer.on_epoch_end

    def stop_after_epoch_1(self, epoch, logs=None):
        save(self, epoch, logs)
        raise faults.Preempted(epoch + 1, 0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Checkpointer, "on_epoch_end", stop_after_epoch_1)
        assert train.main(args) == 143
    assert [r["epoch"] for r in train.read_metrics(out)] == [1.0]
    return out, args
