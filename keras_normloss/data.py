"""Input pipelines: CIFAR-10/100 and ImageNet through tensorflow-datasets, and
synthetic data. TensorFlow only.

Training data is a stream of epochs. For the in-memory datasets (CIFAR,
synthetic) every random choice (the epoch's permutation, each crop and flip)
is a stateless function of `(seed, epoch, position)`, so a run resumed at
epoch `e`, step `k` sees exactly the batches an uninterrupted run would have
seen. ImageNet streams from disk and resumes with a fresh seeded shuffle.
"""

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

DATASETS = ("cifar10", "cifar100", "imagenet2012", "synthetic")

# Per-channel statistics of the training images, in [0, 1] units.
_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet2012": 1000}
_TEST_SPLIT = {"cifar10": "test", "cifar100": "test", "imagenet2012": "validation"}
# How the 4-pixel border of the random crop is filled: zeros of the normalised
# image, i.e. the mean colour (fb.resnet.torch, He et al.'s CIFAR ResNets: its
# RandomCrop pads after ColorNormalize), or a reflection of the image (the Wide
# ResNet authors' `randomcrop_type=reflection`); tf.pad's REFLECT is Torch's
# SpatialReflectionPadding and PyTorch's `padding_mode="reflect"`. Padding
# happens after normalisation in both cases.
CROP_PADDINGS = {"zeros": "CONSTANT", "reflect": "REFLECT"}


class DatasetNotPreparedError(RuntimeError):
    """The dataset is not in the tfds data directory and downloading is off."""


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the training code needs to know about a dataset.

    Attributes:
        name: the dataset's name.
        num_classes: the number of labels.
        image_shape: the model's input shape.
        train_examples, test_examples: split sizes (counted where tfds does
            not know them, e.g. under `tfds.testing.mock_data`).
        synthetic: True for generated data that means nothing.
    """

    name: str
    num_classes: int
    image_shape: tuple
    train_examples: int
    test_examples: int
    synthetic: bool = False

    def steps_per_epoch(self, global_batch_size):
        """Full batches per training epoch (the last partial one is dropped)."""
        return max(1, self.train_examples // global_batch_size)

    def test_steps(self, global_batch_size):
        return math.ceil(self.test_examples / global_batch_size)


@dataclasses.dataclass(frozen=True)
class Pipelines:
    """The datasets for one run.

    Attributes:
        train: a function `(first_epoch, skip_steps) -> tf.data.Dataset`: the
            training batches from epoch `first_epoch`, step `skip_steps` on,
            endlessly (`fit` is given `steps_per_epoch`).
        test: the test batches, in a fixed order.
        info: a `DataInfo`.
    """

    train: object
    test: object
    info: DataInfo


def _epoch_seed(seed, epoch):
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])


def _element_seeds(epoch_seed, index, count):
    seed = tf.random.experimental.stateless_fold_in(epoch_seed, index)
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _normalize(image, stats):
    mean, std = stats
    return (tf.cast(image, tf.float32) / 255.0 - mean) / std


def _in_memory_stream(images, labels, augment, steps_per_epoch, batch_size, seed, options):
    """Endless epochs of in-memory examples, exactly reproducible.

    Epoch e's order is a stateless permutation seeded by (seed, e), and each
    example's augmentation is seeded by (seed, e, position); so a stream
    started at (e, k) is the tail of the stream started at (0, 0).
    """
    n = int(images.shape[0])
    passes = -(-steps_per_epoch * batch_size // n)  # more steps than one pass: several

    def epoch_dataset(epoch):
        epoch_seed = _epoch_seed(seed, epoch)
        order = tf.concat(
            [
                tf.argsort(
                    tf.random.stateless_uniform(
                        [n], seed=tf.random.experimental.stateless_fold_in(epoch_seed, -1 - p)
                    )
                )
                for p in range(passes)
            ],
            axis=0,
        )[: steps_per_epoch * batch_size]
        ds = tf.data.Dataset.from_tensor_slices(order).enumerate()
        ds = ds.map(
            lambda i, j: augment(epoch_seed, i, tf.gather(images, j), tf.gather(labels, j)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds.batch(batch_size, drop_remainder=True)

    def train(first_epoch=0, skip_steps=0):
        ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_dataset)
        return ds.skip(skip_steps).prefetch(tf.data.AUTOTUNE).with_options(options)

    return train


def _streaming_stream(examples, augment, batch_size, seed, options, shuffle_buffer):
    """Endless shuffled passes over a dataset too large for memory (ImageNet).

    Seeded, but not position-exact: a stream started at (e, k) is a fresh
    shuffle seeded by (seed, e, k) rather than the tail of the stream
    started at (0, 0); skipping to the exact position would mean reading
    and decoding up to an epoch of images.
    """

    def train(first_epoch=0, skip_steps=0):
        start_seed = (seed * 1_000_003 + first_epoch * 10_007 + skip_steps) % 2**31
        ds = examples.shuffle(shuffle_buffer, seed=start_seed, reshuffle_each_iteration=True)
        ds = (
            ds.repeat()
            .enumerate()
            .map(
                lambda i, ex: augment(_epoch_seed(start_seed, 0), i, *ex),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        )
        return (
            ds.batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options)
        )

    return train


def _options(deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    # Element-wise sharding: works for in-memory and file-based sources alike
    # under MultiWorkerMirroredStrategy.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _count(ds):
    return int(ds.reduce(np.int64(0), lambda n, _: n + 1))


def _tfds_load(name, split, data_dir, download, **kwargs):
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


def cifar(
    name,
    global_batch_size,
    *,
    seed=0,
    deterministic=True,
    data_dir=None,
    download=False,
    steps_per_epoch=None,
    crop_padding="zeros",
):
    """CIFAR-10 or CIFAR-100 through tensorflow-datasets.

    Training: per-channel normalisation, then 4-pixel padding (zeros, i.e.
    the mean colour, as fb.resnet.torch for He et al. 2016, or a reflection
    as the Wide ResNet code), a random 32x32 crop and a random horizontal
    flip; test: normalisation only. The training
    split is cached in memory.

    Args:
        name: `"cifar10"` or `"cifar100"`.
        global_batch_size: the batch over all replicas.
        seed: seeds the shuffle and the augmentation.
        deterministic: keep tf.data's element order deterministic.
        data_dir: the tfds data directory (default: `TFDS_DATA_DIR` or
            `~/tensorflow_datasets`).
        download: let tfds download and prepare the dataset if missing. If
            False (default), a missing dataset fails at once with
            `DatasetNotPreparedError` rather than after minutes of retries.
        steps_per_epoch: cap on training steps per epoch; default: one pass.
        crop_padding: `"zeros"` or `"reflect"`: how the crop's border is
            filled.

    Returns:
        `Pipelines`.

    Raises:
        DatasetNotPreparedError: if the dataset is not prepared and
            `download` is False.
        ValueError: for an unknown `crop_padding`.

    Example:

    ```python
    pipelines = cifar("cifar10", 128, data_dir="~/tensorflow_datasets")
    model.fit(pipelines.train(), steps_per_epoch=pipelines.info.steps_per_epoch(128),
              validation_data=pipelines.test, epochs=160)
    ```
    """
    if crop_padding not in CROP_PADDINGS:
        raise ValueError(
            f"Invalid value for argument `crop_padding`: expected one of "
            f"{tuple(CROP_PADDINGS)}. Received: crop_padding={crop_padding!r}"
        )
    pad_mode = CROP_PADDINGS[crop_padding]
    stats = _CIFAR_STATS[name]
    train_raw, info = _tfds_load(name, "train", data_dir, download)
    test_raw, _ = _tfds_load(name, "test", data_dir, download)
    splits = info.splits
    # Under tfds.testing.mock_data `info.splits` is empty: count instead.
    n_train = splits["train"].num_examples if "train" in splits else _count(train_raw)
    n_test = splits["test"].num_examples if "test" in splits else _count(test_raw)
    # The whole training split as two tensors (150 MB of images), so that
    # every epoch can be an exact stateless permutation. (tfds's own
    # `batch_size=-1` aborts the process under mock_data in tfds 4.9.10.)
    train_images, train_labels = next(iter(train_raw.batch(n_train)))
    data_info = DataInfo(name, _NUM_CLASSES[name], (32, 32, 3), n_train, n_test)
    steps = steps_per_epoch or data_info.steps_per_epoch(global_batch_size)

    def augment(epoch_seed, index, image, label):
        crop_seed, flip_seed = _element_seeds(epoch_seed, index, 2)
        image = tf.pad(_normalize(image, stats), [[4, 4], [4, 4], [0, 0]], mode=pad_mode)
        image = tf.image.stateless_random_crop(image, (32, 32, 3), crop_seed)
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return image, label

    options = _options(deterministic)
    test = (
        test_raw.map(lambda x, y: (_normalize(x, stats), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(global_batch_size)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
    train = _in_memory_stream(
        train_images, train_labels, augment, steps, global_batch_size, seed, options
    )
    return Pipelines(train, test, data_info)


def _random_resized_crop(image, seed, size):
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, extent)
    return tf.image.resize(image, (size, size), method="bilinear")


def _resize_and_center_crop(image, resize=256, size=224):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new, method="bilinear")
    top = (new[0] - size) // 2
    left = (new[1] - size) // 2
    return image[top : top + size, left : left + size, :]


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
    """ImageNet (ILSVRC 2012) through tensorflow-datasets (manual download).

    Training: a random-resized crop (area 8-100 %, aspect 3/4-4/3) to
    `image_size` and a random horizontal flip; evaluation: resize the
    shorter side to 256/224 of `image_size`, then a central crop. Both are
    normalised with the ImageNet channel statistics.

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
    train_raw, info = _tfds_load(
        "imagenet2012", "train", data_dir, download, shuffle_files=True, read_config=read_config
    )
    test_raw, _ = _tfds_load("imagenet2012", "validation", data_dir, download)
    splits = info.splits
    n_train = splits["train"].num_examples if "train" in splits else _count(train_raw)
    n_test = splits["validation"].num_examples if "validation" in splits else _count(test_raw)
    shape = (image_size, image_size, 3)
    data_info = DataInfo("imagenet2012", 1000, shape, n_train, n_test)
    del steps_per_epoch  # an endless stream: epochs are counted by `fit`

    def augment(epoch_seed, index, image, label):
        crop_seed, flip_seed = _element_seeds(epoch_seed, index, 2)
        image = _random_resized_crop(image, crop_seed, image_size)
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return _normalize(image, _IMAGENET_STATS), label

    def evaluate(image, label):
        image = _resize_and_center_crop(image, round(image_size * 256 / 224), image_size)
        return _normalize(image, _IMAGENET_STATS), label

    options = _options(deterministic)
    test = (
        test_raw.map(evaluate, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(global_batch_size)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
    # Files are shuffled by tfds (seeded); 10,000 decoded images in the buffer.
    train = _streaming_stream(train_raw, augment, global_batch_size, seed, options, 10_000)
    return Pipelines(train, test, data_info)


def synthetic(
    global_batch_size,
    *,
    seed=0,
    deterministic=True,
    steps_per_epoch=None,
    image_shape=(32, 32, 3),
    num_classes=10,
    train_examples=512,
    test_examples=256,
):
    """Generated images for smoke runs and tests: no download, no meaning.

    Each class has a fixed random template; an image is its class's template
    plus twice as much Gaussian noise, so a network can learn something
    and curves move, but the numbers say nothing about any real dataset.

    Args:
        global_batch_size, seed, deterministic, steps_per_epoch: as in
            `cifar`.
        image_shape: the image shape.
        num_classes: the number of labels.
        train_examples, test_examples: split sizes.

    Returns:
        `Pipelines`, with `info.synthetic` True.

    Example:

    ```python
    pipelines = synthetic(32, train_examples=256)
    images, labels = next(iter(pipelines.train()))  # (32, 32, 32, 3), (32,)
    ```
    """
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(num_classes, *image_shape)).astype("float32")

    def split(n, offset):
        r = np.random.default_rng(seed + offset)
        labels = r.integers(0, num_classes, size=n)
        images = templates[labels] + 2.0 * r.normal(size=(n, *image_shape)).astype("float32")
        return tf.constant(images), tf.constant(labels)

    info = DataInfo(
        "synthetic", num_classes, tuple(image_shape), train_examples, test_examples, synthetic=True
    )
    steps = steps_per_epoch or info.steps_per_epoch(global_batch_size)

    def augment(epoch_seed, index, image, label):
        return image, label

    options = _options(deterministic)
    test = tf.data.Dataset.from_tensor_slices(split(test_examples, 1))
    test = test.batch(global_batch_size).with_options(options)
    train = _in_memory_stream(
        *split(train_examples, 2), augment, steps, global_batch_size, seed, options
    )
    return Pipelines(train, test, info)


def load(name, global_batch_size, **kwargs):
    """Returns the `Pipelines` of a dataset by name.

    Args:
        name: one of `DATASETS`: `"cifar10"`, `"cifar100"`, `"imagenet2012"`
            or `"synthetic"`.
        global_batch_size: the batch over all replicas.
        **kwargs: passed to `cifar`, `imagenet` or `synthetic` (`seed`,
            `deterministic`, `steps_per_epoch`, `data_dir`, `download`,
            `crop_padding`; those that do not apply to a dataset are ignored).

    Raises:
        ValueError: for an unknown name.
        DatasetNotPreparedError: see `cifar`.

    Example:

    ```python
    pipelines = load("cifar100", 128, seed=1, download=True)
    ```
    """
    if name not in DATASETS:
        raise ValueError(
            f"Invalid value for argument `dataset`: expected one of {DATASETS}. "
            f"Received: dataset={name!r}"
        )
    if name == "synthetic":
        kwargs.pop("data_dir", None)
        kwargs.pop("download", None)
        kwargs.pop("crop_padding", None)
        return synthetic(global_batch_size, **kwargs)
    if name == "imagenet2012":
        kwargs.pop("crop_padding", None)  # random-resized crops: no border
        return imagenet(global_batch_size, **kwargs)
    return cifar(name, global_batch_size, **kwargs)
