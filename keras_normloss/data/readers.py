"""Reads a dataset's images into memory: one reader per in-memory source kind of the registry
(`registry.SOURCES`), and the order in which an entry's sources are tried.

The readers that need TensorFlow (`tfds`, `folder`) import `tf_sources` only when they run, so
that a backend whose entries never name them never imports TensorFlow.
"""

import os

from keras_normloss.data import backends, folders, sources
from keras_normloss.data.sources import DatasetNotPreparedError


def _tf_sources(backend):
    from keras_normloss.data import tf_sources

    if backend != "tensorflow":
        tf_sources.hide_gpus_from_tensorflow()  # it only reads data for JAX
    return tf_sources


def _shipped(entry, backend, data_dir, download, image_size):
    return sources.shipped(entry.name)


def _idx(entry, backend, data_dir, download, image_size):
    return sources.mnist_like(entry.name, data_dir, download)


def _keras(entry, backend, data_dir, download, image_size):
    return sources.keras_cifar(entry.name, data_dir, download)


def _tfds(entry, backend, data_dir, download, image_size):
    return _tf_sources(backend).tfds_arrays(
        entry.name, data_dir, download, image_size, entry.default_image_size
    )


def _folder(entry, backend, data_dir, download, image_size):
    directory = data_dir and os.path.expanduser(data_dir)
    return _tf_sources(backend).image_folder(directory, image_size or entry.default_image_size)


def _pillow_folder(entry, backend, data_dir, download, image_size):
    directory = data_dir and os.path.expanduser(data_dir)
    return folders.image_folder(directory, image_size or entry.default_image_size)


# Source kind -> reader(entry, backend, data_dir, download, image_size) -> sources.Arrays.
READERS = {
    "shipped": _shipped,
    "idx": _idx,
    "keras": _keras,
    "tfds": _tfds,
    "folder": _folder,
    "pillow-folder": _pillow_folder,
}


def _available(kind):
    """tfds needs tensorflow-datasets and TensorFlow installed; the other readers run anywhere."""
    return kind != "tfds" or backends.tfds_importable()


def read(entry, backend, data_dir=None, download=False, image_size=None):
    """The `sources.Arrays` of a registry entry, for `backend`'s pipelines.

    The entry's sources for the backend are tried in order, skipping those that cannot run
    here (tfds without tensorflow-datasets): the first that runs gets `download`, the later
    ones only read what is already there, each when the one before found nothing.

    Args:
        entry: a `registry.Dataset`.
        backend: a Keras backend.
        data_dir: where to look (each source says what it means).
        download: let the first source download the dataset.
        image_size: the side of datasets whose `image_shape` is None.

    Returns:
        `sources.Arrays`.

    Raises:
        DatasetNotPreparedError: found by no source (saying where each looked).
        MalformedDatasetError: damaged files.
        DatasetBackendError: `backend` cannot load the entry.

    Example:

    ```python
    arrays = read(registry.get("cifar10"), "jax")  # tfds if installed, else Keras's cache
    ```
    """
    kinds = [k for k in entry.sources_for(backend) if _available(k)]
    if not kinds:  # a single source that cannot run here
        kinds = list(entry.sources_for(backend))
    missing = []
    for position, kind in enumerate(kinds):
        try:
            return READERS[kind](entry, backend, data_dir, download and position == 0, image_size)
        except DatasetNotPreparedError as error:
            if len(kinds) == 1:
                raise
            missing.append(str(error))
    raise DatasetNotPreparedError(" Also: ".join(missing))
