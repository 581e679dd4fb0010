"""The datasets by name: each reads its images (`sources`) and builds its pipelines
(`pipelines`). TensorFlow only.

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
"""

import os

from keras_normloss.data import pipelines, sources, validation
from keras_normloss.data.pipelines import (
    AUGMENTATIONS,
    CROP_PADDINGS,
    DataInfo,
    Pipelines,
    synthetic,
)
from keras_normloss.data.sources import DatasetNotPreparedError, MalformedDatasetError


class DatasetOptionError(ValueError):
    """An option the dataset cannot take (`image_size` for CIFAR, `augment` for ImageNet)."""


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
# The side images of varying size (folders, some tfds datasets) are resized to when no
# `image_size` is given: small enough to train on a CPU.
DEFAULT_IMAGE_SIZE = 64


def check_name(name):
    """Raises ValueError unless `name` is one of `DATASETS` or a tfds image-classification
    dataset (checked without reading data)."""
    if name in DATASETS:
        return
    try:
        builder = sources.tfds_builder(name)
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
    pipelines.check_options(kwargs.get("augment"), kwargs.get("crop_padding"))


def _from_arrays(
    name, arrays, global_batch_size, stats=None, augment=None, validation_split=0, **kwargs
):
    if validation_split:
        try:
            arrays = validation.Split(arrays, validation_split)
        except ValueError as error:
            raise DatasetOptionError(f"Dataset {name!r}: {error}") from None
    # Normalised by the statistics of the images trained on, held-out ones excluded.
    stats = stats or pipelines.channel_stats(arrays.train_images)
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
    return pipelines.in_memory(info, arrays, stats, global_batch_size, augment=augment, **kwargs)


def cifar(name, global_batch_size, *, data_dir=None, download=False, **kwargs):
    """CIFAR-10 or CIFAR-100 through tensorflow-datasets.

    Training: per-channel normalisation, then 4-pixel padding (zeros, i.e.
    the mean colour, as fb.resnet.torch for He et al. 2016, or a reflection
    as the Wide ResNet code), a random 32x32 crop and a random horizontal
    flip; test: normalisation only. Both splits are held in memory.

    Args:
        name: `"cifar10"` or `"cifar100"`.
        global_batch_size: the batch over all replicas.
        data_dir: the tfds data directory (default: `TFDS_DATA_DIR` or
            `~/tensorflow_datasets`).
        download: let tfds download and prepare the dataset if missing. If
            False (default), a missing dataset fails at once with
            `DatasetNotPreparedError` rather than after minutes of retries.
        **kwargs: `seed`, `deterministic`, `steps_per_epoch`, `augment`, `crop_padding`:
            see `pipelines.in_memory`.

    Returns:
        `Pipelines`.

    Raises:
        DatasetNotPreparedError: if the dataset is not prepared and
            `download` is False.
        ValueError: for an unknown `crop_padding` or `augment`.

    Example:

    ```python
    pipelines = cifar("cifar10", 128, data_dir="~/tensorflow_datasets")
    model.fit(pipelines.train(), steps_per_epoch=pipelines.info.steps_per_epoch(128),
              validation_data=pipelines.test, epochs=160)
    ```
    """
    _check(kwargs)
    arrays = sources.tfds_arrays(name, data_dir, download)
    return _from_arrays(name, arrays, global_batch_size, stats=CIFAR_STATS[name], **kwargs)


def mnist_like(name, global_batch_size, *, data_dir=None, download=False, **kwargs):
    """Fashion-MNIST, MNIST, or the Fashion-MNIST subset shipped with the package.

    `"fashion_mnist_mini"` is the first 400 training and 100 test images of each class of
    Fashion-MNIST, `"fashion_mnist_small"` the first 1,500 and 300 (the README's first command),
    both in the original order (MIT licence, Zalando SE). 28x28x1 images, normalised by the training split's statistics; training crops a
    4-pixel-padded image back to 28x28 and (not MNIST) flips it.

    Args:
        name: `"fashion_mnist"`, `"mnist"`, `"fashion_mnist_mini"` or `"fashion_mnist_small"`.
        global_batch_size: the batch over all replicas.
        data_dir: a directory holding the four IDX files (see `sources.mnist_like` for where
            it looks otherwise).
        download: let Keras download a dataset found nowhere.
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
    if name in SHIPPED:
        arrays = sources.shipped(name)
    else:
        arrays = sources.mnist_like(name, data_dir, download)
    return _from_arrays(name, arrays, global_batch_size, **kwargs)


def tfds_dataset(
    name, global_batch_size, *, data_dir=None, download=False, image_size=None, **kwargs
):
    """Any tensorflow-datasets image-classification dataset, held in memory.

    Its image size, channels and classes come from its features; normalisation from its
    training split. The test split is `test`, else `validation`, else the last 10 % of
    `train`.

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
    _check(kwargs)
    builder = sources.tfds_builder(name, data_dir)
    if builder is None:
        check_name(name)  # raises with the list of names
    shape = builder.info.features[builder.info.supervised_keys[0]].shape
    if image_size is None and None in shape[:2]:
        image_size = DEFAULT_IMAGE_SIZE
    arrays = sources.tfds_arrays(name, data_dir, download, image_size)
    return _from_arrays(name, arrays, global_batch_size, **kwargs)


def image_folder(global_batch_size, *, data_dir=None, image_size=None, **kwargs):
    """A folder of images, one sub-folder per class, held in memory.

    The layout is `keras.utils.image_dataset_from_directory`'s; with `train/` and `test/` (or
    `val/`, `validation/`) sub-folders those are the splits, otherwise every fifth file of each
    class (20 %, the same files for every run) is held out for testing. Images are read as RGB,
    resized and centre-cropped.

    Args:
        global_batch_size: the batch over all replicas.
        data_dir: the folder.
        image_size: the side of the images (default `DEFAULT_IMAGE_SIZE`).
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
    arrays = sources.image_folder(
        data_dir and os.path.expanduser(data_dir), image_size or DEFAULT_IMAGE_SIZE
    )
    return _from_arrays("folder", arrays, global_batch_size, **kwargs)


def imagenet(
    global_batch_size,
    *,
    seed=0,
    deterministic=True,
    data_dir=None,
    download=False,
    steps_per_epoch=None,
    image_size=224,
):
    """ImageNet (ILSVRC 2012) through tensorflow-datasets (manual download), streamed.

    Preprocessing: `pipelines.imagenet_style`.

    Args:
        global_batch_size, seed, deterministic, data_dir, download,
            steps_per_epoch: as in `cifar`.
        image_size: the side of the model's input.

    Returns:
        `Pipelines`.

    Raises:
        DatasetNotPreparedError: as in `cifar`.

    Example:

    ```python
    pipelines = imagenet(256, data_dir="/data/tfds")  # after `tfds build imagenet2012`
    ```
    """
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed)
    train_raw, info = sources.tfds_load(
        "imagenet2012", "train", data_dir, download, shuffle_files=True, read_config=read_config
    )
    test_raw, _ = sources.tfds_load("imagenet2012", "validation", data_dir, download)
    splits = info.splits
    n_train = splits["train"].num_examples if "train" in splits else _count(train_raw)
    n_test = splits["validation"].num_examples if "validation" in splits else _count(test_raw)
    data_info = DataInfo(
        "imagenet2012",
        1000,
        (image_size, image_size, 3),
        n_train,
        n_test,
        source=f"tfds imagenet2012 in {data_dir or os.environ.get('TFDS_DATA_DIR') or '~'}",
    )
    del steps_per_epoch  # an endless stream: epochs are counted by `fit`
    return pipelines.imagenet_style(
        data_info, train_raw, test_raw, global_batch_size, seed=seed, deterministic=deterministic
    )


def _count(ds):
    return int(ds.reduce(0, lambda n, _: n + 1))


def load(name, global_batch_size, **kwargs):
    """Returns the `Pipelines` of a dataset by name.

    Args:
        name: one of `DATASETS` (see the module docstring) or a tensorflow-datasets
            image-classification dataset.
        global_batch_size: the batch over all replicas.
        **kwargs: `seed`, `deterministic`, `steps_per_epoch`, `data_dir`, `download`,
            `augment`, `crop_padding`, `image_size`, `validation_split` (a fraction or count
            of the training images held out, the same for every seed: see `validation`;
            every dataset but ImageNet and synthetic data). The options the training command passes
            for every dataset are ignored where they do not apply (`data_dir` and `download`
            for the shipped and synthetic data, `crop_padding` for ImageNet and synthetic
            data, `augment` for synthetic data); `image_size` for a fixed-size dataset and
            `augment` for ImageNet raise `DatasetOptionError`.

    Raises:
        ValueError: for an unknown name, or an option the dataset cannot take.
        DatasetNotPreparedError, MalformedDatasetError: see the module docstring.

    Example:

    ```python
    pipelines = load("fashion_mnist_mini", 128, seed=1)
    ```
    """
    check_name(name)
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
        return synthetic(global_batch_size, **options)
    if name == "imagenet2012":
        options = _options(name, kwargs, ("crop_padding",), refused=("augment", "validation_split"))
        return imagenet(global_batch_size, **options)
    if name in CIFAR_STATS:
        return cifar(name, global_batch_size, **_options(name, kwargs, refused=("image_size",)))
    if name in SHIPPED:
        options = _options(name, kwargs, ("data_dir", "download"), refused=("image_size",))
        return mnist_like(name, global_batch_size, **options)
    if name in ("fashion_mnist", "mnist"):
        options = _options(name, kwargs, refused=("image_size",))
        return mnist_like(name, global_batch_size, **options)
    if name == "folder":
        return image_folder(global_batch_size, **_options(name, kwargs, ("download",)))
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
    "CIFAR_STATS",
    "CROP_PADDINGS",
    "DATASETS",
    "DataInfo",
    "DatasetNotPreparedError",
    "DatasetOptionError",
    "MalformedDatasetError",
    "Pipelines",
    "check_name",
    "cifar",
    "default_augment",
    "image_folder",
    "imagenet",
    "load",
    "mnist_like",
    "pipelines",
    "sources",
    "synthetic",
    "tfds_dataset",
    "validation",
]
