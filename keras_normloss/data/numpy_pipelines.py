"""NumPy input pipelines for the Keras backends other than TensorFlow (JAX): in-memory images to
exactly resumable training streams with the tf.data path's augmentations, and
`keras.utils.PyDataset` test and validation batches. No TensorFlow.

Batch `k` of epoch `e` is a pure function of `(seed, e, k)`: the epoch's order is a permutation
seeded by `(seed, e)` (several passes, each its own permutation, when an epoch asks for more
images than there are, as on the tf.data path), and the batch's crops and flips are drawn from
a generator seeded by `(seed, e, k)`. A stream started at `(e, k)` is therefore exactly the tail
of the stream started at `(0, 0)`, and skipping to it costs nothing. The random numbers are
NumPy's (`SeedSequence`), not TensorFlow's: both backends apply the same augmentations to the
same images, but not the same draws.
"""

import keras
import numpy as np

from keras_normloss.data.augmentation import NUMPY_PAD_MODES, check_options, crop_border
from keras_normloss.data.info import DataInfo, Pipelines
from keras_normloss.data.sources import synthetic_arrays

# The two uses of a run's seed, kept apart by the first entry of SeedSequence's spawn key.
_ORDER, _AUGMENTATION = 0, 1


def _generator(seed, use, *position):
    return np.random.default_rng(
        np.random.SeedSequence(int(seed) % 2**64, spawn_key=(use, *map(int, position)))
    )


def epoch_order(num_examples, count, seed, epoch):
    """The indices of the `count` examples of epoch `epoch`: passes over all `num_examples`,
    each a permutation seeded by `(seed, epoch, pass)`, concatenated and cut to `count`.

    Example:

    ```python
    order = epoch_order(4000, 31 * 128, seed=0, epoch=2)
    ```
    """
    passes = -(-count // num_examples)
    return np.concatenate(
        [_generator(seed, _ORDER, epoch, p).permutation(num_examples) for p in range(passes)]
    )[:count]


def normalize(images, mean, std):
    """uint8 images (N, H, W, C) to float32 `(x / 255 - mean) / std`, in float32 as the
    tf.data path computes it, so that both give the same bits.

    Example:

    ```python
    normalize(images, np.float32([0.286]), np.float32([0.353]))
    ```
    """
    count, height, width, channels = images.shape
    # Rows of W * C values, the statistics tiled along them: NumPy broadcasts a length-3 last
    # axis about four times slower than this.
    rows = images.reshape(count * height, width * channels).astype(np.float32)
    rows /= np.float32(255.0)
    rows -= np.tile(np.asarray(mean, np.float32), width)
    rows /= np.tile(np.asarray(std, np.float32), width)
    return rows.reshape(images.shape)


def crop_and_flip(images, generator, border, pad_mode, flip):
    """Random crops of a padded batch, maybe mirrored: the tf.data path's augmentation for a
    whole batch at once.

    Args:
        images: float32 (B, H, W, C), normalised.
        generator: a `np.random.Generator`; draws B row offsets, B column offsets and B coin
            flips, in that order (the flips also when `flip` is False).
        border: pixels of padding on each side (`augmentation.crop_border`).
        pad_mode: an `np.pad` mode: "constant" (zeros) or "reflect".
        flip: mirror left-right the images whose coin came up.

    Returns:
        float32 (B, H, W, C): image i is the window at `(top[i], left[i])` of its padded
        image, mirrored if `flip and mirror[i]`.
    """
    count, height, width, _ = images.shape
    padded = np.pad(images, [(0, 0), (border, border), (border, border), (0, 0)], mode=pad_mode)
    top = generator.integers(0, 2 * border + 1, size=count)
    left = generator.integers(0, 2 * border + 1, size=count)
    mirror = generator.random(count) < 0.5
    # Every image's every window as a view (B, rows, columns, C, H, W); one fancy index
    # copies out the chosen ones.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))
    crops = np.ascontiguousarray(windows[np.arange(count), top, left].transpose(0, 2, 3, 1))
    if flip:
        crops[mirror] = crops[mirror, :, ::-1]
    return crops


def _stream(images, labels, transform, steps_per_epoch, batch_size, seed):
    """`train(first_epoch, skip_steps)` over in-memory arrays (see the module docstring)."""
    num_examples = len(labels)
    labels = labels.astype(np.int32)

    def train(first_epoch=0, skip_steps=0):
        if first_epoch < 0 or skip_steps < 0:
            raise ValueError(
                f"Invalid position: expected first_epoch >= 0 and skip_steps >= 0. "
                f"Received: first_epoch={first_epoch}, skip_steps={skip_steps}"
            )
        epoch, step = first_epoch + skip_steps // steps_per_epoch, skip_steps % steps_per_epoch

        def batches(epoch, step):
            while True:
                order = epoch_order(num_examples, steps_per_epoch * batch_size, seed, epoch)
                for k in range(step, steps_per_epoch):
                    chosen = order[k * batch_size : (k + 1) * batch_size]
                    generator = _generator(seed, _AUGMENTATION, epoch, k)
                    yield transform(images[chosen], generator), labels[chosen]
                epoch, step = epoch + 1, 0

        return batches(epoch, step)

    return train


class EvaluationBatches(keras.utils.PyDataset):
    """Finite batches in a fixed order (the last one maybe partial), re-iterable: what
    `fit(validation_data=...)` and `evaluate` take on every backend.

    Args:
        images: the images (uint8, or float32 for synthetic data).
        labels: int labels.
        batch_size: images per batch.
        transform: applied to each batch of images (normalisation).

    Example:

    ```python
    test = EvaluationBatches(x_test, y_test, 128, lambda x: x / 255.0)
    model.evaluate(test)
    ```
    """

    def __init__(self, images, labels, batch_size, transform):
        super().__init__()  # one worker, no processes: batches come in order
        self._images, self._labels = images, labels.astype(np.int32)
        self._batch_size, self._transform = batch_size, transform

    def __len__(self):
        return -(-len(self._labels) // self._batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        part = slice(index * self._batch_size, (index + 1) * self._batch_size)
        return self._transform(self._images[part]), self._labels[part]


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
    """The pipelines of a dataset held in memory as uint8 arrays, as NumPy batches.

    The same preprocessing as `pipelines.in_memory`: per-channel normalisation by `stats`,
    then (`augment`) a border of `crop_border(side)` pixels (`crop_padding`: zeros of the
    normalised image, or a reflection), a random crop back to the image's size and a random
    horizontal flip; test and validation: normalisation only.

    Args:
        info: the dataset's `DataInfo`.
        arrays: `train_images`, `train_labels`, `test_images`, `test_labels`, and maybe
            `validation_images`, `validation_labels` (`validation.Split`).
        stats: `(mean, std)` per channel, in [0, 1] units.
        global_batch_size: the batch over all devices.
        seed: seeds the order and the augmentation.
        deterministic: accepted for the tf.data path's signature; this path always is.
        steps_per_epoch: training steps per epoch; default: one pass (remainder dropped).
        augment: one of `AUGMENTATIONS`.
        crop_padding: one of `CROP_PADDINGS`.

    Returns:
        `Pipelines`: `train(first_epoch=0, skip_steps=0)` an endless iterator of
        `(float32 NHWC images, int32 labels)`; `test` and `validation` `EvaluationBatches`.

    Raises:
        ValueError: for an unknown `augment` or `crop_padding`.

    Example:

    ```python
    p = in_memory(info, arrays, channel_stats(arrays.train_images), 128)
    images, labels = next(p.train())
    ```
    """
    del deterministic
    check_options(augment=augment, crop_padding=crop_padding)
    mean, std = (np.asarray(v, np.float32) for v in stats)
    border = crop_border(min(arrays.train_images.shape[1:3]))
    pad_mode = NUMPY_PAD_MODES[crop_padding]

    def evaluation(images):
        return normalize(images, mean, std)

    def training(images, generator):
        images = normalize(images, mean, std)
        if augment == "none":
            return images
        return crop_and_flip(images, generator, border, pad_mode, augment == "crop-flip")

    steps = steps_per_epoch or info.steps_per_epoch(global_batch_size)
    train = _stream(
        arrays.train_images, arrays.train_labels, training, steps, global_batch_size, seed
    )
    test = EvaluationBatches(arrays.test_images, arrays.test_labels, global_batch_size, evaluation)
    validation = None
    if getattr(arrays, "validation_labels", None) is not None:
        validation = EvaluationBatches(
            arrays.validation_images, arrays.validation_labels, global_batch_size, evaluation
        )
    return Pipelines(train, test, info, validation)


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
    """Generated images for smoke runs and tests, as NumPy batches: the tf.data path's
    templates and images (`sources.synthetic_arrays`), not augmented.

    Args:
        global_batch_size, seed, deterministic, steps_per_epoch: as in `in_memory`.
        image_shape: the image shape.
        num_classes: the number of labels.
        train_examples, test_examples: split sizes.

    Returns:
        `Pipelines`, with `info.synthetic` True.

    Example:

    ```python
    images, labels = next(synthetic(32, train_examples=256).train())  # (32, 32, 32, 3), (32,)
    ```
    """
    del deterministic
    arrays = synthetic_arrays(seed, image_shape, num_classes, train_examples, test_examples)
    info = DataInfo(
        "synthetic", num_classes, tuple(image_shape), train_examples, test_examples, synthetic=True
    )
    steps = steps_per_epoch or info.steps_per_epoch(global_batch_size)

    def unchanged(images, generator=None):
        return images

    train = _stream(
        arrays.train_images, arrays.train_labels, unchanged, steps, global_batch_size, seed
    )
    test = EvaluationBatches(arrays.test_images, arrays.test_labels, global_batch_size, unchanged)
    return Pipelines(train, test, info)
