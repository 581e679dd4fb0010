"""A run's devices, whatever Keras's backend: the one interface `run` uses, and which module
provides it.

    tensorflow   strategies.TFDistribution          tf.distribute (MirroredStrategy, ...)
    jax          keras_distribution.KerasDistribution  keras.distribution.DataParallel

Both have:

    backend              "tensorflow" or "jax"
    name                 the `--strategy` asked for
    replicas             the devices that each take a slice of the global batch
    chief                True in the process that writes the outputs
    multi_worker         True when several processes train together
    has_gpu, on_tpu      the hardware, for the precision checks (`compute`)
    replicates_on_cpus   True if variables are copied on several CPU devices (no XLA there)
    scope()              build the model, restore it and call `fit` inside it
    check_sizes(batch, info)   refuses batches that do not split over the devices
    prepare(model)       what the backend needs done to a built model before `fit`
    callbacks()          callbacks the devices need in `fit`
    process_batches(it)  this process's part of each training batch
    evaluation_batches(dataset)   this process's part of each evaluation batch
    device_report()      for results.json: backend, strategy, devices, hardware
    versions()           for results.json: the backend's libraries

Only this module, the two it names and the data pipelines know which backend runs.
"""

import keras

from keras_normloss.training.machine import jax_sees_a_gpu


def make_distribution(name, deterministic=False):
    """The devices of a run for `--strategy NAME` on the backend Keras runs on.

    Call it first in a run, before any computation: multi-worker set-ups start their runtimes
    here, and `deterministic` asks the backend for deterministic operations, which some
    backends read only when they start.

    Args:
        name: one of `config.STRATEGIES`.
        deterministic: `--deterministic`.

    Returns:
        A `strategies.TFDistribution` or a `keras_distribution.KerasDistribution`.

    Raises:
        ValueError: if the strategy cannot run here (no TPU, unreachable workers).

    Example:

    ```python
    distribution = make_distribution("auto")
    with distribution.scope():
        model = build_model(...)
    ```
    """
    if keras.backend.backend() == "jax":
        from keras_normloss.training.keras_distribution import KerasDistribution

        return KerasDistribution(name, deterministic)
    from keras_normloss.training.strategies import TFDistribution

    return TFDistribution(name, deterministic)


def has_gpu():
    """True if the backend Keras runs on sees a GPU.

    Example:

    ```python
    has_gpu()  # False on a CPU-only machine
    ```
    """
    if keras.backend.backend() == "jax":
        return jax_sees_a_gpu()
    from keras_normloss.training.strategies import has_gpu as tensorflow_sees_a_gpu

    return tensorflow_sees_a_gpu()

