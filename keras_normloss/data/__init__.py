"""The datasets by name: `load` looks a dataset up in the registry (`registry`), reads its images
(`readers`: `sources`, `folders`, `tf_sources`) and builds the Keras backend's pipelines
(`pipelines`: tf.data on TensorFlow; `numpy_pipelines`: NumPy on JAX and the others).

| name | what | read from | backends |
|---|---|---|---|
| `cifar10`, `cifar100` | the papers' CIFAR | tensorflow-datasets (`--data-dir`: tfds dir); on JAX also Keras's cache | all |
| `imagenet2012` | the papers' ImageNet | tensorflow-datasets (manual download), streamed | TensorFlow |
| `fashion_mnist`, `mnist` | 28x28x1, ten classes | IDX files: `--data-dir`, Keras's cache, or `/usr/share/datasets/` (Debian) | all |
| `fashion_mnist_mini` | 4,000 + 1,000 real Fashion-MNIST images | shipped in the package: no download | all |
| `fashion_mnist_small` | 15,000 + 3,000 real Fashion-MNIST images | shipped in the package: no download | all |
| `folder` | your images, one sub-folder per class | `--data-dir` (Keras's reader; Pillow on JAX) | all |
| any other tfds name | e.g. `svhn_cropped`, `imagenette` | tensorflow-datasets | TensorFlow |
| `synthetic` | generated noise, for smoke tests | nothing | all |

Nothing is downloaded unless `download=True`; a missing dataset raises
`DatasetNotPreparedError` at once, saying where it looked and how to get it, and damaged
files raise `MalformedDatasetError`.

A validation split (`validation_split=`, module `validation`) can be held out of the training
images of every dataset but ImageNet and synthetic data, and the rest cut to a fixed subset
(`train_subset=`, module `subset`): the same images for every run.

Every dataset but ImageNet is held in memory and trains on an exactly resumable stream (see
`pipelines`, `numpy_pipelines`). Normalisation: CIFAR's usual channel statistics, ImageNet's,
and otherwise the statistics of the training split itself. On the backends other than
TensorFlow the pipelines are NumPy, with the same images, splits, normalisation and
augmentations, and TensorFlow is never imported (CIFAR is read through tensorflow-datasets only
if it is installed).
"""


from keras_normloss import _lazy
from keras_normloss.data import (
    augmentation,
    backends,
    readers,
    registry,
    sources,
    subset,
    validation,
)
from keras_normloss.data.augmentation import AUGMENTATIONS, CROP_PADDINGS, channel_stats
from keras_normloss.data.backends import BACKENDS
from keras_normloss.data.backends import resolve as resolve_backend
from keras_normloss.data.info import DataInfo, Pipelines
from keras_normloss.data.registry import (
    DEFAULT_IMAGE_SIZE,
    DatasetBackendError,
    DatasetOptionError,
    default_augment,
)
from keras_normloss.data.sources import DatasetNotPreparedError, MalformedDatasetError

# The tf.data modules import TensorFlow: only when first used, so that the other backends never
# do. `data.pipelines` still works as an attribute.
__getattr__ = _lazy.attributes(__name__, {m: f"{__name__}.{m}" for m in ("pipelines", "tf_sources")})


# The registry's names, and views of it kept for callers of earlier versions.
DATASETS = tuple(registry.DATASETS)
NUMPY_DATASETS = tuple(n for n in DATASETS if registry.NUMPY in registry.DATASETS[n].sources)
SHIPPED = tuple(n for n in DATASETS if "shipped" in registry.DATASETS[n].sources["tensorflow"])
CIFAR_STATS = {n: registry.DATASETS[n].stats for n in ("cifar10", "cifar100")}
DEFAULT_AUGMENT = {
    n: d.augment for n, d in registry.DATASETS.items() if d.augment not in (None, "crop-flip")
}


def check_name(name):
    """Raises ValueError unless `name` is one of `DATASETS` or a tfds image-classification
    dataset (checked without reading data).

    Example:

    ```python
    check_name("svhn_cropped")  # fine where tensorflow-datasets is installed
    ```
    """
    registry.get(name)


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
            of the training images held out, the same for every seed: see `validation`),
            `train_subset` (how many of the rest to train on, the same for every seed: see
            `subset`). The
            options the training command passes for every dataset are ignored where they do not
            apply, and the ones that would change nothing raise `DatasetOptionError`
            (`registry.Dataset.ignored`, `.refused`: `image_size` for a fixed-size dataset,
            `augment` for ImageNet, ...).

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
    return _load(registry.get(name), global_batch_size, backend, kwargs)


def _load(entry, global_batch_size, backend, kwargs):
    """Looks up the entry's sources for the backend, checks the options, reads the arrays and
    hands them to the backend's pipeline module."""
    backend = backends.resolve(backend)
    kinds = entry.sources_for(backend)
    options = entry.options(kwargs)
    if kinds == ("tfds-stream",):  # ImageNet
        from keras_normloss.data import pipelines

        size = options.pop("image_size", entry.default_image_size)
        return pipelines.imagenet(
            global_batch_size,
            stats=entry.stats,
            num_classes=entry.num_classes,
            image_size=size,
            **options,
        )
    module = backends.pipeline_module(backend)
    if kinds == ("synthetic",):
        shape, classes = entry.image_shape, entry.num_classes
        return module.synthetic(
            global_batch_size, image_shape=shape, num_classes=classes, **options
        )
    reading = {k: options.pop(k) for k in ("data_dir", "download", "image_size") if k in options}
    arrays = readers.read(entry, backend, **reading)
    augment = options.pop("augment", entry.augment)
    split = options.pop("validation_split", 0)
    kept = options.pop("train_subset", None)
    try:
        if split:
            arrays = validation.Split(arrays, split)
        if kept:
            arrays = subset.Subset(arrays, kept)  # of the images left to train on
    except ValueError as error:
        raise DatasetOptionError(f"Dataset {entry.name!r}: {error}") from None
    # Normalised by the statistics of the images trained on, held-out ones excluded.
    stats = entry.stats
    if stats == registry.TRAINING_SPLIT:
        stats = channel_stats(arrays.train_images)
    info = DataInfo(
        entry.name,
        arrays.num_classes,
        tuple(int(d) for d in arrays.train_images.shape[1:]),
        len(arrays.train_labels),
        len(arrays.test_labels),
        source=arrays.source,
        validation_examples=len(getattr(arrays, "validation_labels", ())),
    )
    return module.in_memory(info, arrays, stats, global_batch_size, augment=augment, **options)


def cifar(name, global_batch_size, **kwargs):
    """CIFAR-10 or CIFAR-100, held in memory: `load(name, ...)` for these two names.

    Training: per-channel normalisation, 4-pixel padding (zeros, i.e. the mean colour, as
    fb.resnet.torch, or a reflection as the Wide ResNet code), a random 32x32 crop and a
    random horizontal flip; test: normalisation only. Read through tensorflow-datasets; on the
    other backends through it if installed, else from Keras's cache (`sources.keras_cifar`).

    Args:
        name: `"cifar10"` or `"cifar100"`.
        global_batch_size: the batch over all replicas.
        **kwargs: as `load` (`data_dir`: the tfds data directory; `download`: let tfds, or
            Keras, download it; a missing dataset otherwise fails at once).

    Returns:
        `Pipelines`.

    Raises:
        DatasetNotPreparedError: not prepared and `download` is False.
        ValueError: another name, or an unknown `crop_padding` or `augment`.

    Example:

    ```python
    pipelines = cifar("cifar10", 128, data_dir="~/tensorflow_datasets")
    model.fit(pipelines.train(), steps_per_epoch=pipelines.info.steps_per_epoch(128),
              validation_data=pipelines.test, epochs=160)
    ```
    """
    return _family(("cifar10", "cifar100"), name, global_batch_size, kwargs)


def mnist_like(name, global_batch_size, **kwargs):
    """Fashion-MNIST, MNIST, or a Fashion-MNIST subset shipped with the package.

    `"fashion_mnist_mini"` is the first 400 training and 100 test images of each class of
    Fashion-MNIST, `"fashion_mnist_small"` the first 1,500 and 300 (MIT licence, Zalando SE).
    Normalised by the training split's statistics; training crops a 4-pixel-padded image back
    to 28x28 and (not MNIST) flips it.

    Args:
        name: `"fashion_mnist"`, `"mnist"`, `"fashion_mnist_mini"` or `"fashion_mnist_small"`.
        global_batch_size: the batch over all replicas.
        **kwargs: as `load` (`data_dir`: a directory holding the four IDX files, see
            `sources.mnist_like` for where it looks otherwise; `download`: let Keras download).

    Raises:
        DatasetNotPreparedError: found nowhere and `download` is False.
        MalformedDatasetError: damaged files.

    Example:

    ```python
    pipelines = mnist_like("fashion_mnist", 128, data_dir="/usr/share/datasets/fashion-mnist")
    ```
    """
    names = ("fashion_mnist", "mnist", *SHIPPED)
    return _family(names, name, global_batch_size, kwargs)


def _family(names, name, global_batch_size, kwargs):
    if name not in names:
        raise ValueError(
            f"Invalid value for argument `name`: expected one of {names}. Received: name={name!r}"
        )
    backend = kwargs.pop("backend", None)
    return _load(registry.DATASETS[name], global_batch_size, backend, kwargs)


def tfds_dataset(name, global_batch_size, **kwargs):
    """Any tensorflow-datasets image-classification dataset, held in memory. TensorFlow only.

    Its image size, channels and classes come from its features (`registry.tfds_entry`);
    normalisation from its training split. The test split is `test`, else `validation`, else
    the last 10 % of `train`.

    Args:
        name: a tfds name (`"svhn_cropped"`, `"imagenette/160px"`, ...).
        global_batch_size: the batch over all replicas.
        **kwargs: as `load` (`image_size`: resize (shorter side) and centre-crop every image
            to this side; images of varying size get `DEFAULT_IMAGE_SIZE` otherwise).

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
    backend = kwargs.pop("backend", None)
    entry = registry.tfds_entry(name, kwargs.get("data_dir"))
    return _load(entry, global_batch_size, backend, kwargs)


def image_folder(global_batch_size, **kwargs):
    """A folder of images, one sub-folder per class, held in memory: `load("folder", ...)`.

    The layout is `keras.utils.image_dataset_from_directory`'s; with `train/` and `test/` (or
    `val/`, `validation/`) sub-folders those are the splits, otherwise every fifth file of each
    class (20 %, the same files for every run) is held out for testing. Images are read as RGB,
    centre-cropped to a square and area-resized: by Keras on TensorFlow, by Pillow
    (`folders.image_folder`: the same files, crop and resize) on the other backends.

    Args:
        global_batch_size: the batch over all replicas.
        **kwargs: as `load` (`data_dir`: the folder; `image_size`: the side of the images,
            default `DEFAULT_IMAGE_SIZE`).

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
    return load("folder", global_batch_size, **kwargs)


def imagenet(global_batch_size, **kwargs):
    """ImageNet (ILSVRC 2012) through tensorflow-datasets, streamed (TensorFlow only).

    Preprocessing: `pipelines.imagenet_style`. `load("imagenet2012", ...)`.

    Args:
        global_batch_size: the batch over all replicas.
        **kwargs: `seed`, `deterministic`, `data_dir`, `download`, `steps_per_epoch`,
            `image_size` (default 224).

    Returns:
        `Pipelines` (tf.data).

    Raises:
        DatasetNotPreparedError: not prepared and `download` is False.

    Example:

    ```python
    pipelines = imagenet(256, data_dir="/data/tfds")  # after `tfds build imagenet2012`
    ```
    """
    return load("imagenet2012", global_batch_size, **kwargs)


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


__all__ = [
    "AUGMENTATIONS",
    "BACKENDS",
    "CIFAR_STATS",
    "CROP_PADDINGS",
    "DATASETS",
    "DEFAULT_AUGMENT",
    "DEFAULT_IMAGE_SIZE",
    "DataInfo",
    "DatasetBackendError",
    "DatasetNotPreparedError",
    "DatasetOptionError",
    "MalformedDatasetError",
    "NUMPY_DATASETS",
    "Pipelines",
    "SHIPPED",
    "augmentation",
    "check_name",
    "cifar",
    "default_augment",
    "image_folder",
    "imagenet",
    "load",
    "mnist_like",
    "pipelines",
    "registry",
    "resolve_backend",
    "sources",
    "synthetic",
    "tfds_dataset",
    "validation",
]
