"""The `tf.distribute` strategy of a run: which one `--strategy` names, who is chief, the device.

`make_strategy` must run before TensorFlow runs any op: `MultiWorkerMirroredStrategy` configures
the runtime's collectives when it is created. Keras 3 also needs a patch of its private code to
run `fit` under that strategy: `keras_multiworker_patch`.
"""

import os
import platform

import tensorflow as tf

from keras_normloss.training.config import STRATEGIES  # noqa: F401 (the names, checked there)


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
