"""The training augmentations and the normalisation, by name: what both backends' pipelines
apply, and the checks of their options. No TensorFlow.

Training images are normalised by per-channel statistics, then (`augment`) padded by
`crop_border(side)` pixels (`crop_padding`: zeros of the normalised image, i.e. the mean colour,
or a reflection), cropped back at random and flipped left-right at random.
"""

import numpy as np

from keras_normloss import choices

# How the border of the random crop is filled: zeros of the normalised
# image, i.e. the mean colour (fb.resnet.torch, He et al.'s CIFAR ResNets: its
# RandomCrop pads after ColorNormalize), or a reflection of the image (the Wide
# ResNet authors' `randomcrop_type=reflection`); tf.pad's REFLECT is Torch's
# SpatialReflectionPadding, PyTorch's `padding_mode="reflect"` and NumPy's
# `np.pad(mode="reflect")` (the edge pixel is not repeated). Padding happens after
# normalisation in both cases. The values are tf.pad's modes.
CROP_PADDINGS = {"zeros": "CONSTANT", "reflect": "REFLECT"}
# The same paddings as `np.pad` modes.
NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect"}
# Training augmentations of the in-memory datasets: a random crop of the padded image and a
# random horizontal flip (CIFAR's, and the usual one for natural images and Fashion-MNIST),
# the crop alone (digits and text, which a flip would change), or nothing.
AUGMENTATIONS = choices.AUGMENTATIONS  # the names, without Keras: keras_normloss.choices


def crop_border(size):
    """The crop's border: 4 pixels for 28- and 32-pixel images (He et al.), an eighth of the
    side in general.

    Example:

    ```python
    crop_border(32)  # 4
    ```
    """
    return max(1, round(size / 8))


def check_options(augment=None, crop_padding=None):
    """Raises ValueError for an unknown `augment` or `crop_padding` (None: not given).

    Example:

    ```python
    check_options(augment="crop", crop_padding="reflect")  # fine
    ```
    """
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
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units.

    Args:
        images: uint8 array (N, H, W, C).

    Returns:
        `(mean, std)`: tuples of C Python floats (sums in float64).

    Example:

    ```python
    mean, std = channel_stats(arrays.train_images)
    ```
    """
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
