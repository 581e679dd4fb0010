"""Input pipelines: in-memory images to exactly resumable training streams with augmentation,
and the streaming pipeline of datasets too large for memory (ImageNet). TensorFlow only.

Training data is a stream of epochs. For the in-memory datasets every random choice (the
epoch's permutation, each crop and flip) is a stateless function of `(seed, epoch, position)`,
so a run resumed at epoch `e`, step `k` sees exactly the batches an uninterrupted run would
have seen. ImageNet streams from disk and resumes with a fresh seeded shuffle.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

# How the border of the random crop is filled: zeros of the normalised
# image, i.e. the mean colour (fb.resnet.torch, He et al.'s CIFAR ResNets: its
# RandomCrop pads after ColorNormalize), or a reflection of the image (the Wide
# ResNet authors' `randomcrop_type=reflection`); tf.pad's REFLECT is Torch's
# SpatialReflectionPadding and PyTorch's `padding_mode="reflect"`. Padding
# happens after normalisation in both cases.
CROP_PADDINGS = {"zeros": "CONSTANT", "reflect": "REFLECT"}
# Training augmentations of the in-memory datasets: a random crop of the padded image and a
# random horizontal flip (CIFAR's, and the usual one for natural images and Fashion-MNIST),
# the crop alone (digits and text, which a flip would change), or nothing.
AUGMENTATIONS = ("crop-flip", "crop", "none")


def crop_border(size):
    """The crop's border: 4 pixels for 28- and 32-pixel images (He et al.), an eighth of the
    side in general."""
    return max(1, round(size / 8))


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
        source: where the data was read from, for the user.
        validation_examples: images held out of the training split for validation (0:
            none); `train_examples` excludes them.
    """

    name: str
    num_classes: int
    image_shape: tuple
    train_examples: int
    test_examples: int
    synthetic: bool = False
    source: str = ""
    validation_examples: int = 0

    def steps_per_epoch(self, global_batch_size):
        """Full batches per training epoch (the last partial one is dropped)."""
        return max(1, self.train_examples // global_batch_size)

    def test_steps(self, global_batch_size):
        return math.ceil(self.test_examples / global_batch_size)

    def validation_steps(self, global_batch_size):
        return math.ceil(self.validation_examples / global_batch_size)


@dataclasses.dataclass(frozen=True)
class Pipelines:
    """The datasets for one run.

    Attributes:
        train: a function `(first_epoch, skip_steps) -> tf.data.Dataset`: the
            training batches from epoch `first_epoch`, step `skip_steps` on,
            endlessly (`fit` is given `steps_per_epoch`).
        test: the test batches, in a fixed order.
        info: a `DataInfo`.
        validation: the batches of the images held out of the training split (normalised as
            the test images, not augmented), or None.
    """

    train: object
    test: object
    info: DataInfo
    validation: object = None


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


def check_options(augment=None, crop_padding=None):
    """Raises ValueError for an unknown `augment` or `crop_padding` (None: not given)."""
    if crop_padding is not None and crop_padding not in CROP_PADDINGS:
        raise ValueError(
            f"Invalid value for argument `crop_padding`: expected one of "
            f"{tuple(CROP_PADDINGS)}. Received: crop_padding={crop_padding!r}"
        )
    if augment is not None and augment not in AUGMENTATIONS:
        raise ValueError(
            f"Invalid value for argument `augment`: expected one of {AUGMENTATIONS}. "
            f"Received: augment={augment!r}"
        )


def channel_stats(images):
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units."""
    flat = images.reshape(-1, images.shape[-1])
    total = np.zeros(flat.shape[1])
    squares = np.zeros(flat.shape[1])
    for start in range(0, len(flat), 1 << 22):  # float64 sums, a chunk at a time
        chunk = flat[start : start + (1 << 22)].astype(np.float64) / 255.0
        total += chunk.sum(0)
        squares += (chunk**2).sum(0)
    mean = total / len(flat)
    std = np.sqrt(np.maximum(squares / len(flat) - mean**2, 1e-12))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


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


_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def imagenet_style(info, train_raw, test_raw, global_batch_size, *, seed=0, deterministic=True):
    """The pipelines of a large dataset read from disk, with ImageNet's preprocessing.

    Training: a random-resized crop (area 8-100 %, aspect 3/4-4/3) to the side of
    `info.image_shape` and a random horizontal flip; evaluation: resize the shorter side to
    256/224 of it, then a central crop. Both are normalised with the ImageNet channel
    statistics. Training examples are shuffled in a buffer of 10,000 decoded images.
    """
    image_size = info.image_shape[0]

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
