"""The datasets by name: each reads its images (`sources`, `folders`, `tf_sources`) and builds
its pipelines for the Keras backend (`pipelines`: tf.data; `numpy_pipelines`: the others).

| name | what | where it is read from |
|---|---|---|
| `cifar10`, `cifar100` | the papers' CIFAR | tensorflow-datasets (`--data-dir`: tfds dir) |
| `imagenet2012` | the papers' ImageNet | tensorflow-datasets (manual download) |
| `fashion_mnist`, `mnist` | 28x28x1, ten classes | IDX files: `--data-dir`, Keras's cache, or `/usr/share/datasets/` (Debian) |
| `fashion_mnist_mini` | 4,000 + 1,000 real Fashion-MNIST images | shipped in the package: no download |
| `fashion_mnist_small` | 15,000 + 3,000 real Fashion-MNIST images | shipped in the package: no download |
| `folder` | your images, one sub-folder per class | `--data-dir` |
| any other tfds name | e.g. `svhn_cropped`, `imagenette` | tensorflow-datasets |
| `synthetic` | generated noise, for smoke tests | nothing |

Nothing is downloaded unless `download=True`; a missing dataset raises
`DatasetNotPreparedError` at once, saying where it looked and how to get it, and damaged
files raise `MalformedDatasetError`.

A validation split (`validation_split=`, module `validation`) can be held out of the training
images of every dataset but ImageNet and synthetic data: the same images for every run.

Every dataset but ImageNet is held in memory and trains on an exactly resumable stream (see
`pipelines`). Normalisation: CIFAR's usual channel statistics, ImageNet's, and otherwise the
statistics of the training split itself.

Backends: tf.data pipelines on TensorFlow; NumPy ones (`numpy_pipelines`) on the others, for
`NUMPY_DATASETS`, with the same images, splits, normalisation and augmentations and without
TensorFlow (folders read with Pillow; CIFAR from tensorflow-datasets if installed, else Keras's
cache).
"""

import importlib
import os

from keras_normloss.data import augmentation, backends, folders, sources, validation
from keras_normloss.data.augmentation import AUGMENTATIONS, CROP_PADDINGS, channel_stats
from keras_normloss.data.backends import BACKENDS
from keras_normloss.data.backends import resolve as resolve_backend
from keras_normloss.data.info import DataInfo, Pipelines
from keras_normloss.data.sources import DatasetNotPreparedError, MalformedDatasetError


class DatasetOptionError(ValueError):
    """An option the dataset cannot take (`image_size` for CIFAR, `augment` for ImageNet)."""


class DatasetBackendError(DatasetOptionError):
    """A dataset the chosen Keras backend's pipelines cannot load (ImageNet on JAX)."""


def __getattr__(name):
    # The tf.data modules import TensorFlow: only when first used, so that the other
    # backends never do. `data.pipelines` still works as an attribute.
    if name in ("pipelines", "tf_sources"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DATASETS = (
    "cifar10",
    "cifar100",
    "imagenet2012",
    "fashion_mnist",
    "mnist",
    "fashion_mnist_mini",
    "fashion_mnist_small",
    "folder",
    "synthetic",
)
# Subsets of Fashion-MNIST shipped inside the package (keras_normloss/data/<name>/).
SHIPPED = ("fashion_mnist_mini", "fashion_mnist_small")
# Per-channel statistics of CIFAR's training images, in [0, 1] units (the values the
# reference code uses).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
# The default training augmentation of each dataset (`AUGMENTATIONS`): a flip changes a digit,
# so MNIST gets the crop alone; tfds datasets and folders get crop-flip, which suits natural
# images (set `augment="crop"` for digits or text, e.g. svhn_cropped).
DEFAULT_AUGMENT = {"mnist": "crop", "synthetic": "none"}
# The datasets the NumPy pipelines (Keras backends other than TensorFlow) load.
NUMPY_DATASETS = tuple(n for n in DATASETS if n != "imagenet2012")
# The side images of varying size (folders, some tfds datasets) are resized to when no
# `image_size` is given: small enough to train on a CPU.
DEFAULT_IMAGE_SIZE = 64


def check_name(name):
    """Raises ValueError unless `name` is one of `DATASETS` or a tfds image-classification
    dataset (checked without reading data)."""
    if name in DATASETS:
        return
    if not backends.tfds_importable():
        raise ValueError(
            f"Invalid value for argument `dataset`: expected one of {DATASETS} (or, with "
            f"tensorflow-datasets installed, a tfds image-classification dataset). "
            f"Received: dataset={name!r}"
        )
    from keras_normloss.data import tf_sources

    try:
        builder = tf_sources.tfds_builder(name)
    except ValueError as error:
        raise ValueError(f"Invalid value for argument `dataset`: {error}") from None
    if builder is None:
        raise ValueError(
            f"Invalid value for argument `dataset`: expected one of {DATASETS} or the name "
            f"of a tensorflow-datasets image-classification dataset. Received: dataset={name!r}"
        )


def default_augment(name):
    """The training augmentation `name` gets when none is chosen."""
    return DEFAULT_AUGMENT.get(name, "crop-flip")


def _check(kwargs):
    """Bad options fail before any data is read."""
    augmentation.check_options(kwargs.get("augment"), kwargs.get("crop_padding"))


def _from_arrays(
    name,
    arrays,
    global_batch_size,
    stats=None,
    augment=None,
    validation_split=0,
    backend="tensorflow",
    **kwargs,
):
    if validation_split:
        try:
            arrays = validation.Split(arrays, validation_split)
        except ValueError as error:
            raise DatasetOptionError(f"Dataset {name!r}: {error}") from None
    # Normalised by the statistics of the images trained on, held-out ones excluded.
    stats = stats or channel_stats(arrays.train_images)
    info = DataInfo(
        name,
        arrays.num_classes,
        tuple(int(d) for d in arrays.train_images.shape[1:]),
        len(arrays.train_labels),
        len(arrays.test_labels),
        source=arrays.source,
        validation_examples=len(getattr(arrays, "validation_labels", ())),
    )
    augment = augment or default_augment(name)
    module = backends.pipeline_module(backend)
    return module.in_memory(info, arrays, stats, global_batch_size, augment=augment, **kwargs)


def cifar(name, global_batch_size, *, data_dir=None, download=False, backend=None, **kwargs):
    """CIFAR-10 or CIFAR-100, held in memory.

    Training: per-channel normalisation, 4-pixel padding (zeros, i.e. the mean colour, as
    fb.resnet.torch, or a reflection as the Wide ResNet code), a random 32x32 crop and a
    random horizontal flip; test: normalisation only.

    Read through tensorflow-datasets on TensorFlow. On the other backends through
    tensorflow-datasets too if it is installed (and the dataset prepared there), else from
    Keras's cache (`sources.keras_cifar`: what `keras.datasets.cifar10.load_data()` left in
    `$KERAS_HOME/datasets`).

    Args:
        name: `"cifar10"` or `"cifar100"`.
        global_batch_size: the batch over all replicas.
        data_dir: the tfds data directory (default: `TFDS_DATA_DIR` or
            `~/tensorflow_datasets`); for Keras's reader, one holding the batches or archive.
        download: let tfds (or Keras) download and prepare the dataset if missing. If False
            (default), a missing dataset fails at once with `DatasetNotPreparedError`.
        backend: the Keras backend whose pipelines to build (default: Keras's).
        **kwargs: `seed`, `deterministic`, `steps_per_epoch`, `augment`, `crop_padding`:
            see `pipelines.in_memory`.

    Returns:
        `Pipelines`.

    Raises:
        DatasetNotPreparedError: not prepared and `download` is False.
        ValueError: for an unknown `crop_padding` or `augment`.

    Example:

    ```python
    pipelines = cifar("cifar10", 128, data_dir="~/tensorflow_datasets")
    model.fit(pipelines.train(), steps_per_epoch=pipelines.info.steps_per_epoch(128),
              validation_data=pipelines.test, epochs=160)
    ```
    """
    _check(kwargs)
    backend = backends.resolve(backend)
    if backend == "tensorflow":
        from keras_normloss.data import tf_sources

        arrays = tf_sources.tfds_arrays(name, data_dir, download)
    else:
        arrays = _cifar_without_tf_data(name, data_dir, download)
    return _from_arrays(
        name, arrays, global_batch_size, stats=CIFAR_STATS[name], backend=backend, **kwargs
    )


def _cifar_without_tf_data(name, data_dir, download):
    """CIFAR for the NumPy pipelines: tensorflow-datasets if it is installed and has it (its
    images, as on TensorFlow), else Keras's cache."""
    if not backends.tfds_importable():
        return sources.keras_cifar(name, data_dir, download)
    from keras_normloss.data import tf_sources

    tf_sources.hide_gpus_from_tensorflow()
    try:
        return tf_sources.tfds_arrays(name, data_dir, download)
    except DatasetNotPreparedError as tfds_error:
        try:
            return sources.keras_cifar(name, data_dir, download=False)
        except DatasetNotPreparedError as keras_error:
            raise DatasetNotPreparedError(
                f"{tfds_error} Nor in Keras's cache: {keras_error}"
            ) from None


def mnist_like(name, global_batch_size, *, data_dir=None, download=False, backend=None, **kwargs):
    """Fashion-MNIST, MNIST, or the Fashion-MNIST subset shipped with the package.

    `"fashion_mnist_mini"` is the first 400 training and 100 test images of each class of
    Fashion-MNIST, `"fashion_mnist_small"` the first 1,500 and 300 (MIT licence, Zalando SE).
    Normalised by the training split's statistics; training crops a 4-pixel-padded image back
    to 28x28 and (not MNIST) flips it.

    Args:
        name: `"fashion_mnist"`, `"mnist"`, `"fashion_mnist_mini"` or `"fashion_mnist_small"`.
        global_batch_size: the batch over all replicas.
        data_dir: a directory holding the four IDX files (see `sources.mnist_like` for where
            it looks otherwise).
        download: let Keras download a dataset found nowhere.
        backend: the Keras backend whose pipelines to build (default: Keras's).
        **kwargs: see `pipelines.in_memory`.

    Raises:
        DatasetNotPreparedError: found nowhere and `download` is False.
        MalformedDatasetError: damaged files.

    Example:

    ```python
    pipelines = mnist_like("fashion_mnist", 128, data_dir="/usr/share/datasets/fashion-mnist")
    ```
    """
    _check(kwargs)
    backend = backends.resolve(backend)
    if name in SHIPPED:
        arrays = sources.shipped(name)
    else:
        arrays = sources.mnist_like(name, data_dir, download)
    return _from_arrays(name, arrays, global_batch_size, backend=backend, **kwargs)


def tfds_dataset(
    name, global_batch_size, *, data_dir=None, download=False, image_size=None, **kwargs
):
    """Any tensorflow-datasets image-classification dataset, held in memory. TensorFlow only.

    Its image size, channels and classes come from its features; normalisation from its
    training split. The test split is `test`, else `validation`, else the last 10 % of `train`.

    Args:
        name: a tfds name (`"svhn_cropped"`, `"imagenette/160px"`, ...).
        global_batch_size: the batch over all replicas.
        data_dir: the tfds data directory.
        download: let tfds download and prepare it.
        image_size: resize (shorter side) and centre-crop every image to this side; needed
            for images of varying size (default then: `DEFAULT_IMAGE_SIZE`).
        **kwargs: see `pipelines.in_memory`.

    Returns:
        `Pipelines`.

    Raises:
        ValueError: tfds has no such image-classification dataset.
        DatasetNotPreparedError: not prepared and `download` is False.

    Example:

    ```python
    pipelines = tfds_dataset("svhn_cropped", 128, augment="crop")  # digits: no flips
    ```
    """
    from keras_normloss.data import tf_sources

    _check(kwargs)
    check_name(name)  # with the list of names
    arrays = tf_sources.tfds_arrays(name, data_dir, download, image_size, DEFAULT_IMAGE_SIZE)
    return _from_arrays(name, arrays, global_batch_size, **kwargs)


def image_folder(global_batch_size, *, data_dir=None, image_size=None, backend=None, **kwargs):
    """A folder of images, one sub-folder per class, held in memory.

    The layout is `keras.utils.image_dataset_from_directory`'s; with `train/` and `test/` (or
    `val/`, `validation/`) sub-folders those are the splits, otherwise every fifth file of each
    class (20 %, the same files for every run) is held out for testing. Images are read as RGB,
    centre-cropped to a square and area-resized: by Keras on TensorFlow, by Pillow
    (`folders.image_folder`, the same files, crop and resize) on the other backends.

    Args:
        global_batch_size: the batch over all replicas.
        data_dir: the folder.
        image_size: the side of the images (default `DEFAULT_IMAGE_SIZE`).
        backend: the Keras backend whose pipelines to build (default: Keras's).
        **kwargs: see `pipelines.in_memory`.

    Returns:
        `Pipelines`.

    Raises:
        DatasetNotPreparedError: no such directory.
        MalformedDatasetError: no class sub-folders or no images in them.

    Example:

    ```python
    pipelines = image_folder(32, data_dir="~/photos", image_size=96)
    ```
    """
    _check(kwargs)
    backend = backends.resolve(backend)
    if backend == "tensorflow":
        from keras_normloss.data import tf_sources as reader
    else:
        reader = folders
    arrays = reader.image_folder(
        data_dir and os.path.expanduser(data_dir), image_size or DEFAULT_IMAGE_SIZE
    )
    return _from_arrays("folder", arrays, global_batch_size, backend=backend, **kwargs)


def imagenet(global_batch_size, **kwargs):
    """ImageNet (ILSVRC 2012) through tensorflow-datasets, streamed (TensorFlow only).

    See `pipelines.imagenet`, which this calls.

    Args:
        global_batch_size: the batch over all replicas.
        **kwargs: `seed`, `deterministic`, `data_dir`, `download`, `steps_per_epoch`,
            `image_size`.

    Returns:
        `Pipelines` (tf.data).

    Raises:
        DatasetNotPreparedError: not prepared and `download` is False.

    Example:

    ```python
    pipelines = imagenet(256, data_dir="/data/tfds")  # after `tfds build imagenet2012`
    ```
    """
    from keras_normloss.data import pipelines

    return pipelines.imagenet(global_batch_size, **kwargs)


def synthetic(global_batch_size, *, backend=None, **kwargs):
    """Generated images for smoke runs and tests: no download, no meaning.

    Each class has a fixed random template; an image is its class's template plus twice as
    much Gaussian noise (`pipelines.synthetic`, or `numpy_pipelines.synthetic` for backends
    other than TensorFlow: the same images).

    Args:
        global_batch_size: the batch over all replicas.
        backend: the Keras backend whose pipelines to build (default: Keras's).
        **kwargs: `seed`, `deterministic`, `steps_per_epoch`, `image_shape`, `num_classes`,
            `train_examples`, `test_examples`.

    Returns:
        `Pipelines`, with `info.synthetic` True.

    Example:

    ```python
    pipelines = synthetic(32, train_examples=256)
    ```
    """
    return backends.pipeline_module(resolve_backend(backend)).synthetic(global_batch_size, **kwargs)


def load(name, global_batch_size, *, backend=None, **kwargs):
    """Returns the `Pipelines` of a dataset by name, for a Keras backend.

    Args:
        name: one of `DATASETS` (see the module docstring) or a tensorflow-datasets
            image-classification dataset.
        global_batch_size: the batch over all replicas.
        backend: `"tensorflow"` (tf.data pipelines), or another Keras backend (`"jax"`: NumPy
            pipelines, `NUMPY_DATASETS` only); default `keras.backend.backend()`.
        **kwargs: `seed`, `deterministic`, `steps_per_epoch`, `data_dir`, `download`,
            `augment`, `crop_padding`, `image_size`, `validation_split` (a fraction or count
            of the training images held out, the same for every seed: see `validation`;
            every dataset but ImageNet and synthetic data). The options the training command passes
            for every dataset are ignored where they do not apply (`data_dir` and `download`
            for the shipped and synthetic data, `crop_padding` for ImageNet and synthetic
            data, `augment` for synthetic data); `image_size` for a fixed-size dataset and
            `augment` for ImageNet raise `DatasetOptionError`.

    Raises:
        ValueError: for an unknown name or backend, or an option the dataset cannot take.
        DatasetBackendError: a dataset the backend's pipelines cannot load.
        DatasetNotPreparedError, MalformedDatasetError: see the module docstring.

    Example:

    ```python
    pipelines = load("fashion_mnist_mini", 128, seed=1)
    images, labels = next(iter(pipelines.train()))
    ```
    """
    check_name(name)
    backend = backends.resolve(backend)
    if backend != "tensorflow" and name not in NUMPY_DATASETS:
        needs = (
            "it streams through tf.data"
            if name == "imagenet2012"
            else "tensorflow-datasets reads it through tf.data"
        )
        raise DatasetBackendError(
            f"Dataset {name!r} needs the TensorFlow backend ({needs}): run it with "
            f"KERAS_BACKEND=tensorflow; the {backend} backend loads {', '.join(NUMPY_DATASETS)}"
        )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if not kwargs.get("validation_split", 1):
        del kwargs["validation_split"]  # 0: none
    if name == "synthetic":
        options = _options(
            name,
            kwargs,
            ("data_dir", "download", "crop_padding", "augment"),
            ("image_size", "validation_split"),
        )
        return synthetic(global_batch_size, backend=backend, **options)
    if name == "imagenet2012":
        options = _options(name, kwargs, ("crop_padding",), refused=("augment", "validation_split"))
        return imagenet(global_batch_size, **options)
    if name in CIFAR_STATS:
        options = _options(name, kwargs, refused=("image_size",))
        return cifar(name, global_batch_size, backend=backend, **options)
    if name in SHIPPED:
        options = _options(name, kwargs, ("data_dir", "download"), refused=("image_size",))
        return mnist_like(name, global_batch_size, backend=backend, **options)
    if name in ("fashion_mnist", "mnist"):
        options = _options(name, kwargs, refused=("image_size",))
        return mnist_like(name, global_batch_size, backend=backend, **options)
    if name == "folder":
        options = _options(name, kwargs, ("download",))
        return image_folder(global_batch_size, backend=backend, **options)
    return tfds_dataset(name, global_batch_size, **kwargs)


def _options(name, kwargs, ignored=(), refused=()):
    """`kwargs` without the options the dataset has no use for (`ignored`: the training command
    passes them for every dataset); a `refused` option would change nothing, so setting it is
    an error rather than a silent no-op."""
    for key in refused:
        if key in kwargs:
            raise DatasetOptionError(
                f"Dataset {name!r} does not take `{key}`. Received: {key}={kwargs[key]!r}"
            )
    return {k: v for k, v in kwargs.items() if k not in ignored}


__all__ = [
    "AUGMENTATIONS",
    "BACKENDS",
    "CIFAR_STATS",
    "CROP_PADDINGS",
    "DATASETS",
    "DataInfo",
    "DatasetBackendError",
    "DatasetNotPreparedError",
    "DatasetOptionError",
    "MalformedDatasetError",
    "NUMPY_DATASETS",
    "Pipelines",
    "check_name",
    "cifar",
    "default_augment",
    "image_folder",
    "imagenet",
    "load",
    "mnist_like",
    "pipelines",
    "resolve_backend",
    "sources",
    "synthetic",
    "tfds_dataset",
    "validation",
]
