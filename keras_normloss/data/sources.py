"""Where a dataset's images come from: arrays read from tensorflow-datasets, IDX files, Keras's
dataset cache, the subset shipped with the package, or a folder of images. TensorFlow only.

Every reader returns an `Arrays` of uint8 images (N, H, W, C) and int labels, or fails at once
with `DatasetNotPreparedError` (nothing there; says where it looked and how to get it) or
`MalformedDatasetError` (something there, but not what it should be). Nothing is downloaded
unless `download=True`.
"""

import dataclasses
import gzip
import importlib.resources
import os
import zlib

import numpy as np
import tensorflow as tf


class DatasetNotPreparedError(RuntimeError):
    """The dataset is not where it was looked for, and downloading is off."""


class MalformedDatasetError(RuntimeError):
    """Files were found where the dataset should be, but they are not that dataset."""


@dataclasses.dataclass(frozen=True)
class Arrays:
    """A dataset in memory.

    Attributes:
        train_images, test_images: uint8 arrays (N, H, W, C).
        train_labels, test_labels: int arrays (N,).
        num_classes: the number of labels.
        source: where it was read from, for the user.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    source: str


def keras_cache_dir():
    """Keras's dataset cache: `$KERAS_HOME/datasets` (default `~/.keras/datasets`), as
    `keras.utils.get_file` uses it."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)

# The four files of the MNIST format, as LeCun's and Zalando's sites name them; each may be
# gzipped (`.gz`), as Keras's cache and Debian's dataset-fashion-mnist keep them.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, 3 dims (images) or 1 (labels)
MNIST_LIKE = {
    "fashion_mnist": dict(
        keras_subdir="fashion-mnist",
        system_dir="/usr/share/datasets/fashion-mnist",
        how=(
            "on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (no other download), "
            "or get the four files from https://github.com/zalandoresearch/fashion-mnist "
            "into a directory given as --data-dir, or run again with --download (Keras downloads "
            "them into its cache)"
        ),
    ),
    "mnist": dict(
        keras_subdir="mnist",
        system_dir="/usr/share/datasets/mnist",
        how=(
            "put the four IDX files of https://yann.lecun.com/exdb/mnist/ in a directory given "
            "as --data-dir, or run again with --download (Keras downloads mnist.npz into its "
            "cache)"
        ),
    ),
}


def _idx_path(directory, stem):
    for name in (stem, f"{stem}.gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def read_idx(path, dims):
    """Reads one IDX file (gzipped or not) of unsigned bytes with `dims` dimensions.

    Raises:
        MalformedDatasetError: if it is not such a file, or is cut short.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise MalformedDatasetError(f"{path}: cannot be read ({error})") from None
    header = 4 + 4 * dims
    if len(raw) < header or int.from_bytes(raw[:4], "big") != _IDX_MAGIC[dims]:
        raise MalformedDatasetError(
            f"{path}: not an IDX file of {dims}-dimensional unsigned bytes (bad header)"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(raw) - header != int(np.prod(shape)):
        raise MalformedDatasetError(
            f"{path}: the header says {shape} but the file holds {len(raw) - header} bytes of "
            "data (truncated?)"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx_dir(directory, num_classes=10):
    """Reads the four IDX files of an MNIST-format dataset from `directory`.

    Returns:
        `Arrays` (images with a channel axis of 1), or None if a file is missing.

    Raises:
        MalformedDatasetError: if a file is damaged or the splits do not fit together.
    """
    paths = {
        split: [_idx_path(directory, stem) for stem in stems] for split, stems in IDX_FILES.items()
    }
    if any(p is None for pair in paths.values() for p in pair):
        return None
    splits = {}
    for split, (images_path, labels_path) in paths.items():
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise MalformedDatasetError(
                f"{directory}: {len(images)} {split} images but {len(labels)} labels"
            )
        if labels.size and labels.max() >= num_classes:
            raise MalformedDatasetError(
                f"{labels_path}: label {labels.max()} outside 0..{num_classes - 1}"
            )
        splits[split] = (images[..., None], labels.astype(np.int64))
    if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
        raise MalformedDatasetError(f"{directory}: train and test images differ in size")
    return Arrays(*splits["train"], *splits["test"], num_classes, source=directory)


def mnist_like(name, data_dir=None, download=False):
    """MNIST or Fashion-MNIST from IDX files.

    Looks in `data_dir` only if it is given; otherwise in Keras's cache
    (`$KERAS_HOME/datasets/fashion-mnist/`, or `mnist.npz` there) and then where Debian's
    dataset package puts it (`/usr/share/datasets/fashion-mnist/`). With `download`, a dataset
    found nowhere is fetched by `keras.datasets.<name>.load_data()`.

    Raises:
        DatasetNotPreparedError: found nowhere and `download` is False.
        MalformedDatasetError: damaged files.
    """
    spec = MNIST_LIKE[name]
    cache = keras_cache_dir()
    places = (
        [data_dir] if data_dir else [os.path.join(cache, spec["keras_subdir"]), spec["system_dir"]]
    )
    for place in places:
        arrays = read_idx_dir(place) if os.path.isdir(place) else None
        if arrays is not None:
            return arrays
    npz = os.path.join(cache, "mnist.npz")
    if name == "mnist" and not data_dir and os.path.isfile(npz):
        return _read_mnist_npz(npz)
    if download:
        import keras

        (x, y), (xt, yt) = getattr(keras.datasets, name).load_data()
        return Arrays(
            x[..., None],
            y.astype(np.int64),
            xt[..., None],
            yt.astype(np.int64),
            10,
            source=f"keras.datasets.{name} (downloaded into {cache})",
        )
    looked = places + ([npz] if name == "mnist" and not data_dir else [])
    raise DatasetNotPreparedError(
        f"Dataset {name!r} not found: looked for its four IDX files "
        f"({', '.join(s for pair in IDX_FILES.values() for s in pair)}, each maybe .gz) in "
        f"{' and '.join(looked)}. To get it: {spec['how']}."
    )


def _read_mnist_npz(path):
    try:
        with np.load(path) as f:
            x, y, xt, yt = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    except (OSError, KeyError, ValueError) as error:
        raise MalformedDatasetError(f"{path}: not Keras's mnist.npz ({error})") from None
    return Arrays(
        x[..., None], y.astype(np.int64), xt[..., None], yt.astype(np.int64), 10, source=path
    )


def shipped(name):
    """A dataset shipped inside the package (`fashion_mnist_mini`, `fashion_mnist_small`), as IDX files."""
    directory = importlib.resources.files("keras_normloss.data") / name
    arrays = read_idx_dir(str(directory))
    if arrays is None:
        raise DatasetNotPreparedError(
            f"{directory} is missing from this installation of keras-normloss; reinstall it"
        )
    return arrays


# --------------------------------------------------------------------------------------------
# tensorflow-datasets


def tfds_load(name, split, data_dir, download, **kwargs):
    """`tfds.load(..., as_supervised=True, with_info=True)`, failing fast if not prepared."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=download,
            as_supervised=True,
            with_info=True,
            **kwargs,
        )
    except Exception as error:  # tfds raises AssertionError or DatasetNotFoundError
        if download or not _looks_unprepared(error):
            raise
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        manual = (
            " ImageNet must be downloaded by hand first: put ILSVRC2012_img_train.tar "
            "and ILSVRC2012_img_val.tar in <data dir>/downloads/manual/."
            if name == "imagenet2012"
            else ""
        )
        raise DatasetNotPreparedError(
            f"Dataset {name!r} is not prepared in {where} (set by --data-dir or "
            f"TFDS_DATA_DIR).{manual} Prepare it once with network access: "
            f"`tfds build {name} --data_dir {where}`, or run again with --download."
        ) from error


def _looks_unprepared(error):
    text = f"{type(error).__name__} {error}".lower()
    return any(s in text for s in ("not found", "notfound", "does not exist", "download"))


def tfds_builder(name, data_dir=None):
    """The tfds builder of an image-classification dataset, or None if tfds has no such name.

    Raises:
        ValueError: if tfds knows the name but it is not (image, class label) data.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)  # reads no data; fast
    except tfds.core.registered.DatasetNotFoundError:
        return None
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) != 2:
        raise ValueError(f"tfds dataset {name!r} has no (image, label) supervised keys")
    image, label = (info.features[k] for k in keys)
    if not isinstance(image, tfds.features.Image) or not isinstance(
        label, tfds.features.ClassLabel
    ):
        raise ValueError(
            f"tfds dataset {name!r} is not image classification: its supervised keys are "
            f"{type(image).__name__} and {type(label).__name__}"
        )
    return builder


def _to_uint8_arrays(ds, image_size, source):
    """All of a tf.data split of (image, label) as uint8 arrays; images of another size than
    `image_size` (or of varying size) are resized (shorter side) and centre-cropped.

    Raises:
        MalformedDatasetError: an image or record of `source` cannot be decoded.
    """

    def fit(image, label):
        if image_size is None:
            if image.dtype != tf.uint8:  # keras.utils.image_dataset_from_directory: float 0..255
                image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        else:
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            scale = image_size / tf.reduce_min(shape)
            new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
            image = tf.image.resize(image, new, method="bilinear", antialias=True)
            top, left = (new[0] - image_size) // 2, (new[1] - image_size) // 2
            image = image[top : top + image_size, left : left + image_size]
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, label

    images, labels = [], []
    try:
        for x, y in ds.map(fit, num_parallel_calls=tf.data.AUTOTUNE).batch(1024):
            images.append(x.numpy())
            labels.append(y.numpy())
    except tf.errors.OpError as error:  # a damaged image file or tfds record
        first_line = (error.message or str(error)).strip().splitlines()[0]
        raise MalformedDatasetError(f"{source}: cannot decode its data ({first_line})") from None
    if not images:
        raise MalformedDatasetError(f"{source}: a split of the dataset is empty")
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def tfds_arrays(name, data_dir=None, download=False, image_size=None, held_out=0.1):
    """Any tfds image-classification dataset, in memory.

    The test split is `test`, else `validation`, else the last `held_out` of `train` (tfds's
    split slicing: the same examples for every seed). The image size, channels and classes come
    from the dataset's features; images of variable size need `image_size`.

    Raises:
        ValueError: an unknown or unsuitable name, or variable-size images without
            `image_size`.
        DatasetNotPreparedError: not prepared and `download` is False.
    """
    builder = tfds_builder(name, data_dir)
    if builder is None:
        raise ValueError(f"tensorflow-datasets has no dataset {name!r}")
    if download and not builder.info.splits:
        builder.download_and_prepare()  # so that the splits are known before one is chosen
    info = builder.info
    image_key, label_key = info.supervised_keys
    shape = info.features[image_key].shape
    if None in shape[:2] and image_size is None:
        raise ValueError(
            f"{name!r} has images of varying size {shape}: choose one with --image-size"
        )
    if image_size is not None and tuple(shape[:2]) == (image_size, image_size):
        image_size = None  # already that size
    # A dataset not prepared in `data_dir` knows no splits: loading "train" below then fails
    # with DatasetNotPreparedError. (Under tfds.testing.mock_data no split is known either.)
    splits = set(info.splits) or {"train", "test"}
    if "train" not in splits:
        raise ValueError(
            f"tfds dataset {name!r} has no train split (it has {', '.join(sorted(splits))})"
        )
    test = next((s for s in ("test", "validation") if s in splits), None)
    train_split = "train" if test else f"train[:{100 - round(100 * held_out)}%]"
    test_split = test or f"train[{100 - round(100 * held_out)}%:]"
    _check_memory(name, info, image_size, shape)
    train, _ = tfds_load(name, train_split, data_dir, download)
    test_ds, _ = tfds_load(name, test_split, data_dir, download)
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    source = f"tfds {name} in {where} ({train_split} / {test_split})"
    return Arrays(
        *_to_uint8_arrays(train, image_size, source),
        *_to_uint8_arrays(test_ds, image_size, source),
        info.features[label_key].num_classes,
        source=source,
    )


def _check_memory(name, info, image_size, shape):
    """Refuses a dataset whose images would take more than half of this machine's memory (they
    are held as uint8 arrays, and briefly twice)."""
    examples = sum(split.num_examples for split in info.splits.values())
    if not examples:
        return
    side = (image_size, image_size) if image_size else tuple(shape[:2])
    needed = examples * side[0] * side[1] * (shape[2] or 3)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if 2 * needed > memory:
        raise MalformedDatasetError(
            f"tfds {name}: {examples:,} images of {side[0]}x{side[1]} need {needed / 2**30:.1f} "
            f"GiB held in memory, more than half of this machine's {memory / 2**30:.1f} GiB; "
            "choose a smaller --image-size"
        )


# --------------------------------------------------------------------------------------------
# A folder of images

# Sub-folders that hold a folder dataset's test split, when present beside `train/`.
TEST_FOLDERS = ("test", "val", "validation")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def image_folder(directory, image_size, held_out_every=5):
    """Images in `directory/<class>/*.{png,jpg,jpeg,bmp,gif}`, read by
    `keras.utils.image_dataset_from_directory` (RGB, resized with area interpolation and
    centre-cropped to `image_size`).

    If `directory` has `train/` and a `test/`, `val/` or `validation/` sub-folder with the same
    classes, those are the splits; otherwise every `held_out_every`-th file of each class (in
    file-name order) is held out for testing: 20 %, stratified, the same files for every run.

    Raises:
        DatasetNotPreparedError: `directory` is not given or does not exist.
        MalformedDatasetError: no class sub-folders, no images, a damaged image, or class
            folders that hold only sub-folders (split folders under another name).
    """
    import keras

    if not directory:
        raise DatasetNotPreparedError(
            "--dataset folder needs --data-dir: a directory with one sub-folder of images per "
            "class (or train/ and test/ directories laid out so)"
        )
    if not os.path.isdir(directory):
        raise DatasetNotPreparedError(f"image folder {directory} does not exist")
    read = dict(
        labels="inferred",
        label_mode="int",
        color_mode="rgb",
        image_size=(image_size, image_size),
        interpolation="area",
        crop_to_aspect_ratio=True,
        batch_size=None,
        shuffle=False,  # file-name order within each class: the split below is fixed
        verbose=False,
    )
    train_dir = os.path.join(directory, "train")
    test_dir = next(
        (
            os.path.join(directory, t)
            for t in TEST_FOLDERS
            if os.path.isdir(os.path.join(directory, t))
        ),
        None,
    )
    split_folders = os.path.isdir(train_dir) and test_dir is not None
    for root in (train_dir, test_dir) if split_folders else (directory,):
        _check_class_folders(root)
    try:
        if split_folders:
            train = keras.utils.image_dataset_from_directory(train_dir, **read)
            test = keras.utils.image_dataset_from_directory(
                test_dir, class_names=train.class_names, **read
            )
            classes = train.class_names
            source = f"{directory} (train/ and {os.path.basename(test_dir)}/"
            arrays = (
                *_to_uint8_arrays(train, None, directory),
                *_to_uint8_arrays(test, None, directory),
            )
        else:
            everything = keras.utils.image_dataset_from_directory(directory, **read)
            classes = everything.class_names
            images, labels = _to_uint8_arrays(everything, None, directory)
            position = np.zeros(len(labels), np.int64)  # index of each file within its class
            for c in range(len(classes)):
                members = np.flatnonzero(labels == c)
                position[members] = np.arange(len(members))
            test = position % held_out_every == held_out_every - 1
            arrays = (images[~test], labels[~test], images[test], labels[test])
            source = f"{directory} (every {held_out_every}th file of each class held out"
    except ValueError as error:  # "No images found in directory ...", class mismatches
        raise MalformedDatasetError(f"image folder {directory}: {error}") from None
    if len(classes) < 2:
        raise MalformedDatasetError(
            f"image folder {directory}: found {len(classes)} class sub-folder(s); need at least 2"
        )
    if not len(arrays[3]):
        raise MalformedDatasetError(f"image folder {directory}: no test images")
    return Arrays(
        *arrays,
        len(classes),
        source=f"{source}; {len(classes)} classes: {', '.join(classes[:5])}"
        f"{', ...' if len(classes) > 5 else ''})",
    )


def _check_class_folders(root):
    """Refuses class folders that hold images only in deeper folders: Keras would read them
    recursively, and `data/train/<c>` plus `data/valid/<c>` would become the classes "train"
    and "valid"."""
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        entries = os.listdir(path)
        has_images = any(e.lower().endswith(IMAGE_EXTENSIONS) for e in entries)
        has_folders = any(os.path.isdir(os.path.join(path, e)) for e in entries)
        if has_folders and not has_images:
            raise MalformedDatasetError(
                f"image folder {root}: {name}/ holds folders, not images; give the folder whose "
                f"sub-folders are the classes (train/ with {'/, '.join(TEST_FOLDERS)}/ beside "
                "it are recognised)"
            )
