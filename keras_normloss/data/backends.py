"""Which pipelines a Keras backend gets: tf.data on TensorFlow (`pipelines`), NumPy on the
others (`numpy_pipelines`); and whether tensorflow-datasets can be used at all.

The tf.data module is imported only when TensorFlow's pipelines are asked for, so that the
other backends never import TensorFlow.
"""

import importlib.util

import keras

from keras_normloss.data import numpy_pipelines

# Keras backends: TensorFlow gets tf.data pipelines, the others NumPy ones.
BACKENDS = ("tensorflow", "jax", "torch", "numpy")


def tfds_importable():
    """tensorflow-datasets and TensorFlow are installed (checked without importing them)."""
    return all(
        importlib.util.find_spec(m) is not None for m in ("tensorflow_datasets", "tensorflow")
    )


def resolve(backend=None):
    """The Keras backend whose pipelines to build: `backend`, or Keras's own if None.

    Args:
        backend: one of `BACKENDS`, or None.

    Returns:
        The backend's name.

    Raises:
        ValueError: an unknown backend.

    Example:

    ```python
    resolve()  # "jax" under KERAS_BACKEND=jax
    ```
    """
    backend = backend or keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(
            f"Invalid value for argument `backend`: expected one of {BACKENDS}. "
            f"Received: backend={backend!r}"
        )
    return backend


def pipeline_module(backend):
    """The module whose `in_memory` and `synthetic` build `backend`'s pipelines."""
    if backend == "tensorflow":
        from keras_normloss.data import pipelines

        return pipelines
    return numpy_pipelines
