"""Every supported layer kind, with an independent NumPy view of its channels.

Each case builds a layer and gives `as_rows(kernel) -> (channels, fan_in)`:
the kernel rearranged so that row c holds every weight feeding output
channel c, derived from Keras's documented kernel layouts (not from
keras_normloss.norms).
"""

import keras
import numpy as np


def _last_is_channel(k):
    return k.reshape(-1, k.shape[-1]).T


def _second_to_last_is_channel(k):
    return np.moveaxis(k, -2, 0).reshape(k.shape[-2], -1)


def _depthwise(k):
    # (*spatial, in, multiplier): channel (i, m) sees only the spatial taps.
    return k.reshape(-1, k.shape[-2] * k.shape[-1]).T


CASES = {
    "Dense": (lambda: keras.layers.Dense(5), (None, 7), "kernel", _last_is_channel, (0,)),
    "Conv1D": (lambda: keras.layers.Conv1D(6, 3), (None, 9, 4), "kernel", _last_is_channel, (0, 1)),
    "Conv2D": (
        lambda: keras.layers.Conv2D(6, 3),
        (None, 9, 9, 4),
        "kernel",
        _last_is_channel,
        (0, 1, 2),
    ),
    "Conv2D-groups": (
        lambda: keras.layers.Conv2D(6, 3, groups=2),
        (None, 9, 9, 4),
        "kernel",
        _last_is_channel,
        (0, 1, 2),
    ),
    "Conv3D": (
        lambda: keras.layers.Conv3D(5, 2),
        (None, 5, 5, 5, 3),
        "kernel",
        _last_is_channel,
        (0, 1, 2, 3),
    ),
    "Conv1DTranspose": (
        lambda: keras.layers.Conv1DTranspose(6, 3),
        (None, 9, 4),
        "kernel",
        _second_to_last_is_channel,
        (0, 2),
    ),
    "Conv2DTranspose": (
        lambda: keras.layers.Conv2DTranspose(6, 3),
        (None, 9, 9, 4),
        "kernel",
        _second_to_last_is_channel,
        (0, 1, 3),
    ),
    "Conv3DTranspose": (
        lambda: keras.layers.Conv3DTranspose(5, 2),
        (None, 5, 5, 5, 3),
        "kernel",
        _second_to_last_is_channel,
        (0, 1, 2, 4),
    ),
    "DepthwiseConv1D": (
        lambda: keras.layers.DepthwiseConv1D(3, depth_multiplier=2),
        (None, 9, 4),
        "kernel",
        _depthwise,
        (0,),
    ),
    "DepthwiseConv2D": (
        lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        (None, 9, 9, 4),
        "kernel",
        _depthwise,
        (0, 1),
    ),
    "SeparableConv1D-depthwise": (
        lambda: keras.layers.SeparableConv1D(6, 3, depth_multiplier=2),
        (None, 9, 4),
        "depthwise_kernel",
        _depthwise,
        (0,),
    ),
    "SeparableConv1D-pointwise": (
        lambda: keras.layers.SeparableConv1D(6, 3, depth_multiplier=2),
        (None, 9, 4),
        "pointwise_kernel",
        _last_is_channel,
        (0, 1),
    ),
    "SeparableConv2D-depthwise": (
        lambda: keras.layers.SeparableConv2D(6, 3, depth_multiplier=2),
        (None, 9, 9, 4),
        "depthwise_kernel",
        _depthwise,
        (0, 1),
    ),
    "SeparableConv2D-pointwise": (
        lambda: keras.layers.SeparableConv2D(6, 3, depth_multiplier=2),
        (None, 9, 9, 4),
        "pointwise_kernel",
        _last_is_channel,
        (0, 1, 2),
    ),
    "EinsumDense-2d": (
        lambda: keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 5)),
        (None, 3, 7),
        "kernel",
        _last_is_channel,
        (0,),
    ),
    "EinsumDense-3d": (
        # kernel (b, c, d): channels are (c, d) pairs, each fed by all of b
        lambda: keras.layers.EinsumDense("ab,bcd->acd", output_shape=(3, 4)),
        (None, 7),
        "kernel",
        lambda k: k.reshape(k.shape[0], -1).T,
        (0,),
    ),
}


def build(name, seed=0):
    """Returns (layer, kernel variable as NumPy-randomised, case tuple)."""
    make, input_shape, attr, as_rows, axes = CASES[name]
    layer = make()
    layer.build(input_shape)
    kernel = getattr(layer, attr)
    rng = np.random.default_rng(seed)
    kernel.assign(rng.normal(size=kernel.shape).astype("float32") * 0.7)
    return layer, kernel, as_rows, axes


def normloss_numpy(rows, factor):
    norms = np.sqrt((rows.astype("float64") ** 2).sum(axis=1))
    return factor * ((1.0 - norms) ** 2).sum()


def normloss_gradient_numpy(rows, factor):
    """The paper's eq. 6, on the (channels, fan_in) view."""
    rows = rows.astype("float64")
    norms = np.sqrt((rows**2).sum(axis=1, keepdims=True))
    return 2.0 * factor * rows * (1.0 - 1.0 / norms)
