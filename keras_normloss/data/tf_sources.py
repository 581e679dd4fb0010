"""The readers that need TensorFlow: any tensorflow-datasets image-classification dataset in
memory, and image folders through `keras.utils.image_dataset_from_directory`.

They return `sources.Arrays` and raise `sources`' errors. The other backends read folders with
`folders.image_folder` (Pillow) and CIFAR from Keras's cache (`sources.keras_cifar`) instead.
"""

import contextlib
import logging
import os

import numpy as np
import tensorflow as tf

from keras_normloss.data import folders
from keras_normloss.data.sources import Arrays, DatasetNotPreparedError, MalformedDatasetError


def hide_gpus_from_tensorflow():
    """Keeps TensorFlow, when it only reads data for another backend (JAX), off the GPUs: left
    alone it would reserve most of their memory on its first op. No-op once TensorFlow has
    initialised its devices (it refuses then)."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass


@contextlib.contextmanager
def _tfds_warnings_silenced():
    """Where a dataset is not prepared, tfds logs "Variant folder ... has no
    dataset_info.json" (absl, WARNING) before the one-line error that says what to do."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


def tfds_load(name, split, data_dir, download, **kwargs):
    """`tfds.load(..., as_supervised=True, with_info=True)`, failing fast if not prepared."""
    import tensorflow_datasets as tfds

    try:
        with _tfds_warnings_silenced():
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
        with _tfds_warnings_silenced():
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


def _undecodable_file(paths):
    """The first of `paths` that TensorFlow cannot decode as an image, with the reason's first
    line, or None. Run only after a decoding error, to name its file."""
    for path in paths:
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except tf.errors.OpError as error:
            return path, (error.message or str(error)).strip().splitlines()[0]
    return None


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
        # An image folder: name the file, as the Pillow reader does, not TensorFlow's message
        # (the folder and an internal blob of its graph).
        damaged = _undecodable_file(getattr(ds, "file_paths", ()))
        if damaged is not None:
            source, first_line = damaged
        raise MalformedDatasetError(f"{source}: cannot decode its data ({first_line})") from None
    if not images:
        raise MalformedDatasetError(f"{source}: a split of the dataset is empty")
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def tfds_arrays(
    name, data_dir=None, download=False, image_size=None, default_size=None, held_out=0.1
):
    """Any tfds image-classification dataset, in memory.

    The test split is `test`, else `validation`, else the last `held_out` of `train` (tfds's
    split slicing: the same examples for every seed). The image size, channels and classes come
    from the dataset's features; images of variable size need `image_size` (or get
    `default_size`).

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
        image_size = default_size
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


def image_folder(directory, image_size, held_out_every=5):
    """Images in `directory/<class>/*.{png,jpg,jpeg,bmp,gif}`, read by
    `keras.utils.image_dataset_from_directory` (RGB, resized with area interpolation and
    centre-cropped to `image_size`).

    If `directory` has `train/` and a `test/`, `val/` or `validation/` sub-folder with the same
    classes, those are the splits; otherwise every `held_out_every`-th file of each class (in
    file-name order) is held out for testing: 20 %, stratified, the same files for every run
    (`folders.layout`, `folders.hold_out`).

    Args:
        directory: the folder.
        image_size: the side of the images.
        held_out_every: hold out every n-th file of each class when there is no test folder.

    Returns:
        `Arrays`.

    Raises:
        DatasetNotPreparedError: `directory` is not given or does not exist.
        MalformedDatasetError: no class sub-folders, no images, a damaged image, or class
            folders that hold only sub-folders (split folders under another name).

    Example:

    ```python
    arrays = image_folder("~/photos", 64)
    ```
    """
    import keras

    train_dir, test_dir = folders.layout(directory)
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
    try:
        if test_dir:
            train = keras.utils.image_dataset_from_directory(train_dir, **read)
            test = keras.utils.image_dataset_from_directory(
                test_dir, class_names=train.class_names, **read
            )
            classes = train.class_names
            arrays = (
                *_to_uint8_arrays(train, None, directory),
                *_to_uint8_arrays(test, None, directory),
            )
        else:
            everything = keras.utils.image_dataset_from_directory(directory, **read)
            classes = everything.class_names
            images, labels = _to_uint8_arrays(everything, None, directory)
            arrays = folders.hold_out(images, labels, len(classes), held_out_every)
    except ValueError as error:  # "No images found in directory ...", class mismatches
        raise MalformedDatasetError(f"image folder {directory}: {error}") from None
    return folders.folder_arrays(directory, classes, arrays, test_dir, held_out_every)
