"""THE table of datasets: every dataset `load` (and `train --dataset`) knows by name, and the rule
that makes an entry for any other tensorflow-datasets image-classification dataset.

An entry declares where the images come from on each backend (`SOURCES`, tried in order), their
shape and classes, how they are normalised, the default training augmentation, which of the
options the training command passes for every dataset it ignores and which it refuses, and so
which Keras backends load it. `load` decides nothing per name: it reads the entry.

| name | TensorFlow reads | JAX (other backends) reads | shape | classes | normalised by | augment | ignores | refuses |
|---|---|---|---|---|---|---|---|---|
| cifar10, cifar100 | tfds | tfds, else Keras's cache | 32x32x3 | 10, 100 | CIFAR's channel stats | crop-flip | | image_size |
| imagenet2012 | tfds, streamed | - | image_size (224) | 1000 | ImageNet's stats | its own | crop_padding | augment, validation_split, train_subset |
| fashion_mnist | IDX files | IDX files | 28x28x1 | 10 | training split | crop-flip | | image_size |
| mnist | IDX files or mnist.npz | the same | 28x28x1 | 10 | training split | crop | | image_size |
| fashion_mnist_mini, fashion_mnist_small | shipped IDX files | the same | 28x28x1 | 10 | training split | crop-flip | data_dir, download | image_size |
| folder | Keras's image_dataset_from_directory | Pillow (same files, crop, resize) | image_size (64) | sub-folders | training split | crop-flip | download | |
| synthetic | generated | generated | 32x32x3 | 10 | - (already) | none | data_dir, download, crop_padding, augment | image_size, validation_split, train_subset |
| any other tfds name | tfds | - | its features (or image_size, 64) | its features | training split | crop-flip | | |
"""

import dataclasses

from keras_normloss.data.augmentation import check_options
from keras_normloss.data.backends import BACKENDS
from keras_normloss.errors import DatasetBackendError, DatasetOptionError

# Where images come from (`readers` reads the in-memory kinds):
SOURCES = {
    "shipped": "IDX files shipped inside the package",
    "idx": "IDX files (--data-dir, Keras's cache, /usr/share/datasets) or Keras's mnist.npz",
    "keras": "Keras's dataset cache, as keras.datasets.<name>.load_data() leaves it",
    "tfds": "tensorflow-datasets, held in memory",
    "tfds-stream": "tensorflow-datasets, streamed from disk (tf.data)",
    "folder": "a folder of images, read by keras.utils.image_dataset_from_directory",
    "pillow-folder": "a folder of images, read with Pillow as Keras would",
    "synthetic": "generated",
}
# `Dataset.sources` keys: TensorFlow's tf.data pipelines, and the NumPy ones of every other
# backend.
TENSORFLOW, NUMPY = "tensorflow", "numpy"
# `Dataset.stats` for statistics computed from the images trained on (held-out ones excluded).
TRAINING_SPLIT = "training split"
# The options `load` takes besides the name and batch size.
OPTIONS = (
    "seed",
    "deterministic",
    "steps_per_epoch",
    "data_dir",
    "download",
    "augment",
    "crop_padding",
    "image_size",
    "validation_split",
    "train_subset",
)
# Per-channel statistics in [0, 1] units: CIFAR's training images (the values the reference code
# uses) and ImageNet's (torchvision's).
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# The side images of varying size (folders, some tfds datasets) are resized to when no
# `image_size` is given: small enough to train on a CPU.
DEFAULT_IMAGE_SIZE = 64


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One row of the table of datasets.

    Attributes:
        name: the name `load` and `train --dataset` take.
        summary: what it is, in a few words.
        sources: `{TENSORFLOW: kinds, NUMPY: kinds}`: the `SOURCES` each backend's pipelines
            read it from, tried in order (a later one only reads what is there); a missing key:
            that backend cannot load it.
        image_shape: `(H, W, C)`, or None if `image_size` sets it (`default_image_size`).
        num_classes: the number of labels, or None if the data says.
        stats: `(mean, std)` per channel in [0, 1] units, `TRAINING_SPLIT`, or None (generated
            data, not normalised).
        augment: the default training augmentation (`augmentation.AUGMENTATIONS`), or None for
            a dataset with its own preprocessing (ImageNet).
        ignored: options accepted and ignored (the training command passes them for every
            dataset).
        refused: options that would change nothing: setting one raises `DatasetOptionError`.
        default_image_size: the side when `image_shape` is None and no `image_size` is given.
    """

    name: str
    summary: str
    sources: dict
    image_shape: object
    num_classes: object
    stats: object
    augment: object
    ignored: tuple = ()
    refused: tuple = ()
    default_image_size: object = None

    @property
    def backends(self):
        """The Keras backends that load it."""
        return tuple(
            b for b in BACKENDS if (TENSORFLOW if b == TENSORFLOW else NUMPY) in self.sources
        )

    def sources_for(self, backend):
        """The source kinds `backend`'s pipelines read, in order.

        Raises:
            DatasetBackendError: `backend` cannot load this dataset.
        """
        kinds = self.sources.get(TENSORFLOW if backend == TENSORFLOW else NUMPY)
        if not kinds:
            needs = ", ".join(SOURCES[k] for k in self.sources[TENSORFLOW])
            raise DatasetBackendError(
                f"Dataset {self.name!r} needs the TensorFlow backend (it is read from {needs}): "
                f"run it with KERAS_BACKEND=tensorflow; the {backend} backend loads "
                f"{', '.join(n for n, d in DATASETS.items() if NUMPY in d.sources)}"
            )
        return kinds

    def options(self, kwargs):
        """`kwargs` as the dataset takes them: None values and a `validation_split` of 0
        dropped, then the `ignored` ones; `augment` and `crop_padding` checked.

        Raises:
            DatasetOptionError: a `refused` option is set.
            ValueError: an unknown option, `augment` or `crop_padding`.
        """
        unknown = set(kwargs) - set(OPTIONS)
        if unknown:
            raise ValueError(
                f"Unknown option(s) {sorted(unknown)} for dataset {self.name!r}: expected some "
                f"of {OPTIONS}"
            )
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if not kwargs.get("validation_split", 1):
            del kwargs["validation_split"]  # 0: none
        for key in self.refused:
            if key in kwargs:
                raise DatasetOptionError(
                    f"Dataset {self.name!r} does not take `{key}`. Received: {key}={kwargs[key]!r}"
                )
        kwargs = {k: v for k, v in kwargs.items() if k not in self.ignored}
        check_options(kwargs.get("augment"), kwargs.get("crop_padding"))
        return kwargs


_BOTH = {TENSORFLOW: ("tfds",), NUMPY: ("tfds", "keras")}


def _idx_like(name, summary, sources, augment="crop-flip", ignored=()):
    return Dataset(
        name,
        summary,
        {TENSORFLOW: (sources,), NUMPY: (sources,)},
        (28, 28, 1),
        10,
        TRAINING_SPLIT,
        augment,
        ignored=ignored,
        refused=("image_size",),
    )


_TABLE = (
    Dataset(
        "cifar10",
        "the papers' CIFAR-10",
        _BOTH,
        (32, 32, 3),
        10,
        CIFAR10_STATS,
        "crop-flip",
        refused=("image_size",),
    ),
    Dataset(
        "cifar100",
        "the papers' CIFAR-100",
        _BOTH,
        (32, 32, 3),
        100,
        CIFAR100_STATS,
        "crop-flip",
        refused=("image_size",),
    ),
    Dataset(
        "imagenet2012",
        "the papers' ImageNet (ILSVRC 2012), manual download",
        {TENSORFLOW: ("tfds-stream",)},
        None,
        1000,
        IMAGENET_STATS,
        None,
        ignored=("crop_padding",),
        refused=("augment", "validation_split", "train_subset"),
        default_image_size=224,
    ),
    _idx_like("fashion_mnist", "Fashion-MNIST, 60,000 + 10,000 images", "idx"),
    # A flip changes a digit: MNIST gets the crop alone.
    _idx_like("mnist", "MNIST, 60,000 + 10,000 digits", "idx", augment="crop"),
    _idx_like(
        "fashion_mnist_mini",
        "4,000 + 1,000 real Fashion-MNIST images, shipped",
        "shipped",
        ignored=("data_dir", "download"),
    ),
    _idx_like(
        "fashion_mnist_small",
        "15,000 + 3,000 real Fashion-MNIST images, shipped",
        "shipped",
        ignored=("data_dir", "download"),
    ),
    Dataset(
        "folder",
        "your images, one sub-folder per class (--data-dir)",
        {TENSORFLOW: ("folder",), NUMPY: ("pillow-folder",)},
        None,
        None,
        TRAINING_SPLIT,
        "crop-flip",
        ignored=("download",),
        default_image_size=DEFAULT_IMAGE_SIZE,
    ),
    Dataset(
        "synthetic",
        "generated noise around class templates, for smoke tests",
        {TENSORFLOW: ("synthetic",), NUMPY: ("synthetic",)},
        (32, 32, 3),
        10,
        None,
        "none",
        ignored=("data_dir", "download", "crop_padding", "augment"),
        refused=("image_size", "validation_split", "train_subset"),
    ),
)
DATASETS = {d.name: d for d in _TABLE}


def tfds_entry(name, data_dir=None):
    """The entry of a tensorflow-datasets image-classification dataset not in the table: its
    shape and classes from its features, normalised by its training split, crop-flip (set
    `augment="crop"` for digits or text, e.g. svhn_cropped), TensorFlow only.

    Args:
        name: a tfds name (`"svhn_cropped"`, `"imagenette/160px"`, ...).
        data_dir: the tfds data directory.

    Returns:
        A `Dataset`.

    Raises:
        ValueError: tensorflow-datasets is not installed, has no such dataset, or it is not
            (image, class label) data.

    Example:

    ```python
    tfds_entry("svhn_cropped").image_shape  # (32, 32, 3)
    ```
    """
    from keras_normloss.data import backends

    if not backends.tfds_importable():
        raise ValueError(
            f"Invalid value for argument `dataset`: expected one of {tuple(DATASETS)} (or, with "
            f"tensorflow-datasets installed, a tfds image-classification dataset). "
            f"Received: dataset={name!r}"
        )
    from keras_normloss.data import tf_sources

    try:
        builder = tf_sources.tfds_builder(name, data_dir)
    except ValueError as error:
        raise ValueError(f"Invalid value for argument `dataset`: {error}") from None
    if builder is None:
        raise ValueError(
            f"Invalid value for argument `dataset`: expected one of {tuple(DATASETS)} or the "
            f"name of a tensorflow-datasets image-classification dataset. Received: dataset={name!r}"
        )
    image_key, label_key = builder.info.supervised_keys
    shape = tuple(builder.info.features[image_key].shape)
    return Dataset(
        name,
        f"tensorflow-datasets {name}",
        {TENSORFLOW: ("tfds",)},
        None if None in shape[:2] else shape,
        builder.info.features[label_key].num_classes,
        TRAINING_SPLIT,
        "crop-flip",
        default_image_size=DEFAULT_IMAGE_SIZE if None in shape[:2] else None,
    )


def get(name):
    """Returns the `Dataset` called `name`: the table's, or one made by `tfds_entry`.

    Args:
        name: one of `DATASETS`, or a tensorflow-datasets image-classification dataset.

    Returns:
        A `Dataset`.

    Raises:
        ValueError: for an unknown name (checked without reading data).

    Example:

    ```python
    get("mnist").augment  # "crop"
    ```
    """
    return DATASETS[name] if name in DATASETS else tfds_entry(name)


def default_augment(name):
    """The training augmentation `name` gets when none is chosen.

    No tfds look-up: every name outside the table gets crop-flip. None for ImageNet, whose
    preprocessing is its own (`pipelines.imagenet_style`).

    Example:

    ```python
    default_augment("mnist")  # "crop"
    ```
    """
    return DATASETS[name].augment if name in DATASETS else "crop-flip"
