"""tf.data input pipelines: in-memory images to exactly resumable training streams with
augmentation, and the streaming pipeline of datasets too large for memory (ImageNet).
TensorFlow only (`numpy_pipelines` is the other backends' counterpart).

Training data is a stream of epochs. For the in-memory datasets every random choice (the
epoch's permutation, each crop and flip) is a stateless function of `(seed, epoch, position)`,
so a run resumed at epoch `e`, step `k` sees exactly the batches an uninterrupted run would
have seen. ImageNet streams from disk and resumes with a fresh seeded shuffle.
"""

import os

import numpy as np
import tensorflow as tf

from keras_normloss.data import tf_sources
from keras_normloss.data.augmentation import (  # noqa: F401 (AUGMENTATIONS, channel_stats: re-exported)
    AUGMENTATIONS,
    CROP_PADDINGS,
    channel_stats,
    check_options,
    crop_border,
)
from keras_normloss.data.info import DataInfo, Pipelines
from keras_normloss.data.sources import synthetic_arrays


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


def in_memory(
    info,
    arrays,
    stats,
    global_batch_size,
    *,
    seed=0,
    deterministic=True,
    steps_per_epoch=None,
    augment="crop-flip",
    crop_padding="zeros",
):
    """The pipelines of a dataset held in memory as uint8 arrays.

    Training: per-channel normalisation by `stats`, then (`augment`) a border of
    `crop_border(side)` pixels (`crop_padding`: zeros, i.e. the mean colour, or a reflection),
    a random crop back to the image's size and a random horizontal flip; test: normalisation
    only. The whole training split is two tensors, so that every epoch is an exact stateless
    permutation (see the module docstring).

    Args:
        info: the dataset's `DataInfo`.
        arrays: an object with `train_images`, `train_labels`, `test_images`, `test_labels`
            (`keras_normloss.data.sources.Arrays`), and `validation_images`,
            `validation_labels` if a validation split was held out (`validation.Split`).
        stats: `(mean, std)` per channel, in [0, 1] units.
        global_batch_size: the batch over all replicas.
        seed: seeds the shuffle and the augmentation.
        deterministic: keep tf.data's element order deterministic.
        steps_per_epoch: cap on training steps per epoch; default: one pass.
        augment: one of `AUGMENTATIONS`.
        crop_padding: one of `CROP_PADDINGS`.

    Returns:
        `Pipelines`.

    Raises:
        ValueError: for an unknown `augment` or `crop_padding`.
    """
    check_options(augment=augment, crop_padding=crop_padding)
    pad_mode = CROP_PADDINGS[crop_padding]
    shape = tuple(int(d) for d in arrays.train_images.shape[1:])
    border = crop_border(min(shape[:2]))
    steps = steps_per_epoch or info.steps_per_epoch(global_batch_size)
    stats = tuple(np.asarray(v, np.float32) for v in stats)

    def augment_fn(epoch_seed, index, image, label):
        image = _normalize(image, stats)
        if augment == "none":
            return image, label
        crop_seed, flip_seed = _element_seeds(epoch_seed, index, 2)
        pads = [[border, border], [border, border], [0, 0]]
        image = tf.image.stateless_random_crop(tf.pad(image, pads, mode=pad_mode), shape, crop_seed)
        if augment == "crop-flip":
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return image, label

    options = _options(deterministic)

    def evaluation(images, labels):
        return (
            tf.data.Dataset.from_tensor_slices((images, labels))
            .map(lambda x, y: (_normalize(x, stats), y), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(global_batch_size)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options)
        )

    test = evaluation(arrays.test_images, arrays.test_labels)
    held_out = getattr(arrays, "validation_labels", None)
    validation = None if held_out is None else evaluation(arrays.validation_images, held_out)
    train = _in_memory_stream(
        tf.constant(arrays.train_images),
        tf.constant(arrays.train_labels),
        augment_fn,
        steps,
        global_batch_size,
        seed,
        options,
    )
    return Pipelines(train, test, info, validation)


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


def imagenet_style(
    info, train_raw, test_raw, global_batch_size, *, stats, seed=0, deterministic=True
):
    """The pipelines of a large dataset read from disk, with ImageNet's preprocessing.

    Training: a random-resized crop (area 8-100 %, aspect 3/4-4/3) to the side of
    `info.image_shape` and a random horizontal flip; evaluation: resize the shorter side to
    256/224 of it, then a central crop. Both are normalised with `stats` (`(mean, std)` per
    channel in [0, 1] units: ImageNet's, `registry.IMAGENET_STATS`). Training examples are
    shuffled in a buffer of 10,000 decoded images.
    """
    image_size = info.image_shape[0]

    def augment(epoch_seed, index, image, label):
        crop_seed, flip_seed = _element_seeds(epoch_seed, index, 2)
        image = _random_resized_crop(image, crop_seed, image_size)
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return _normalize(image, stats), label

    def evaluate(image, label):
        image = _resize_and_center_crop(image, round(image_size * 256 / 224), image_size)
        return _normalize(image, stats), label

    options = _options(deterministic)
    test = (
        test_raw.map(evaluate, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(global_batch_size)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
    train = _streaming_stream(train_raw, augment, global_batch_size, seed, options, 10_000)
    return Pipelines(train, test, info)


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
    arrays = synthetic_arrays(seed, image_shape, num_classes, train_examples, test_examples)

    info = DataInfo(
        "synthetic", num_classes, tuple(image_shape), train_examples, test_examples, synthetic=True
    )
    steps = steps_per_epoch or info.steps_per_epoch(global_batch_size)

    def augment(epoch_seed, index, image, label):
        return image, label

    options = _options(deterministic)
    test = tf.data.Dataset.from_tensor_slices(
        (tf.constant(arrays.test_images), tf.constant(arrays.test_labels))
    )
    test = test.batch(global_batch_size).with_options(options)
    train = _in_memory_stream(
        tf.constant(arrays.train_images),
        tf.constant(arrays.train_labels),
        augment,
        steps,
        global_batch_size,
        seed,
        options,
    )
    return Pipelines(train, test, info)


def imagenet(
    global_batch_size,
    *,
    stats,
    num_classes,
    seed=0,
    deterministic=True,
    data_dir=None,
    download=False,
    steps_per_epoch=None,
    image_size=224,
):
    """ImageNet (ILSVRC 2012) through tensorflow-datasets (manual download), streamed.
    TensorFlow only.

    Preprocessing: `imagenet_style`.

    Args:
        global_batch_size, seed, deterministic, data_dir, download,
            steps_per_epoch: as in `keras_normloss.data.load`.
        stats: `(mean, std)` per channel (the registry's entry: ImageNet's).
        num_classes: the number of labels (1000).
        image_size: the side of the model's input.

    Returns:
        `Pipelines`.

    Raises:
        DatasetNotPreparedError: as in `cifar`.

    Example:

    ```python
    entry = registry.get("imagenet2012")
    pipelines = imagenet(256, stats=entry.stats, num_classes=1000, data_dir="/data/tfds")
    ```
    """
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed)
    train_raw, info = tf_sources.tfds_load(
        "imagenet2012", "train", data_dir, download, shuffle_files=True, read_config=read_config
    )
    test_raw, _ = tf_sources.tfds_load("imagenet2012", "validation", data_dir, download)
    splits = info.splits
    n_train = splits["train"].num_examples if "train" in splits else _count(train_raw)
    n_test = splits["validation"].num_examples if "validation" in splits else _count(test_raw)
    data_info = DataInfo(
        "imagenet2012",
        num_classes,
        (image_size, image_size, 3),
        n_train,
        n_test,
        source=f"tfds imagenet2012 in {data_dir or os.environ.get('TFDS_DATA_DIR') or '~'}",
    )
    del steps_per_epoch  # an endless stream: epochs are counted by `fit`
    return imagenet_style(
        data_info,
        train_raw,
        test_raw,
        global_batch_size,
        stats=stats,
        seed=seed,
        deterministic=deterministic,
    )


def _count(ds):
    return int(ds.reduce(0, lambda n, _: n + 1))
