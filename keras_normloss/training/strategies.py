"""The `tf.distribute` strategy of a run on TensorFlow: which one `--strategy` names, who is
chief, the device; `TFDistribution` puts it behind the interface `training.distribution` names.

`make_strategy` must run before TensorFlow runs any op: `MultiWorkerMirroredStrategy` configures
the runtime's collectives when it is created. Keras 3 also needs a patch of its private code to
run `fit` under that strategy: `keras_multiworker_patch`.
"""

import os
import platform

import tensorflow as tf

from keras_normloss import errors
from keras_normloss.training import keras_multiworker_patch
from keras_normloss.training.config import STRATEGIES  # noqa: F401 (the names, checked there)
from keras_normloss.training.machine import installed_version


def make_strategy(name):
    """The `tf.distribute` strategy for `--strategy NAME`.

    `auto`: MirroredStrategy over all visible GPUs, else the CPU alone;
    `mirrored`: MirroredStrategy over all GPUs, else over all logical CPU
    devices (useful for testing); `multiworker`: MultiWorkerMirroredStrategy
    configured by `TF_CONFIG`; `tpu`: TPUStrategy; `one-device`: the first
    GPU, else the CPU.
    """
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(
            gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    if name == "auto" and gpus:
        return tf.distribute.MirroredStrategy(gpus)
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")


def is_multi_worker(strategy):
    """True under MultiWorkerMirroredStrategy (whose class is CollectiveAllReduceStrategy)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def replicates_on_cpus(strategy):
    """True if the strategy holds a copy of the variables on each of several CPU devices."""
    return (
        isinstance(
            strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
        )
        and strategy.num_replicas_in_sync > 1
        and not tf.config.list_logical_devices("GPU")
    )


def is_chief(strategy):
    """True for the one process that writes outputs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def has_gpu():
    """True if TensorFlow sees a GPU."""
    return bool(tf.config.list_physical_devices("GPU"))


def device_report(strategy, requested):
    """The strategy, replicas and hardware of a run, for results.json."""
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append(details.get("device_name", gpu.name))
    return {
        "strategy": requested,
        # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy
        "strategy_class": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "gpus": gpus,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }


def run_ops_one_at_a_time():
    """Inter-op parallelism 1, for `--deterministic`.

    `enable_op_determinism` makes each op deterministic, but not the order in
    which independent ops run: with dropout and Norm Loss together, two runs
    of a WRN differed by 3e-8 after one step (2e-5 after four) until
    inter-op parallelism was 1 (measured on 2 CPU cores). It can only be set
    before TensorFlow starts its runtime; a process that started it already
    (a notebook, a test) keeps its setting, and is told.
    """
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        if tf.config.threading.get_inter_op_parallelism_threads() != 1:
            print(
                "NOTE: --deterministic could not set TensorFlow's inter-op parallelism to 1 "
                "(the runtime had started); results may differ in the last bits."
            )


class TFDistribution:
    """A run's `tf.distribute` strategy, with the interface `training.distribution` describes.

    Args:
        name: `--strategy` (`config.STRATEGIES`).
        deterministic: make TensorFlow's ops deterministic and run them one at a time.

    Raises:
        ValueError: if the strategy cannot be made here (e.g. `tpu` where no TPU is found).

    Example:

    ```python
    distribution = TFDistribution("auto")
    with distribution.scope():
        model = build()
    ```
    """

    backend = "tensorflow"

    def __init__(self, name, deterministic=False):
        if deterministic:
            run_ops_one_at_a_time()  # before the strategy starts the runtime
        self.name = name
        self.strategy = make_strategy(name)  # before any op: multi-worker configures the runtime
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = is_chief(self.strategy)
        self.multi_worker = is_multi_worker(self.strategy)
        self.has_gpu = has_gpu()
        self.on_tpu = isinstance(self.strategy, tf.distribute.TPUStrategy)
        self.replicates_on_cpus = replicates_on_cpus(self.strategy)

    def scope(self):
        """The strategy's scope: build the model, restore it and call `fit` inside it."""
        return self.strategy.scope()

    def check_sizes(self, batch_size, info):
        """Raises `errors.UsageError` if the global batch does not split over the replicas (the
        last, smaller batch of an evaluation split may: tf.distribute splits it unevenly)."""
        if batch_size % self.replicas:
            raise errors.UsageError(
                f"--batch-size {batch_size} does not split over {self.replicas} replicas"
            )

    def prepare(self, model):
        """Patches Keras's trainer for a multi-worker `fit` (`keras_multiworker_patch`).

        Raises:
            RuntimeError: if this Keras changed the private code the patch needs.
        """
        if self.multi_worker:
            keras_multiworker_patch.apply(model)

    def callbacks(self):
        """The callbacks these devices need in `fit`: none."""
        return []

    def process_batches(self, batches):
        """The batches this process feeds `fit`: all of them (tf.distribute splits them)."""
        return batches

    def evaluation_batches(self, dataset):
        """The evaluation batches this process feeds: all of them."""
        return dataset

    def device_report(self):
        """The backend, strategy, replicas and hardware of the run, for results.json."""
        return {"backend": self.backend, **device_report(self.strategy, self.name)}

    def versions(self):
        """TensorFlow's libraries, for results.json."""
        return {
            "tensorflow": tf.__version__,
            "tensorflow_datasets": installed_version("tensorflow-datasets"),
        }
