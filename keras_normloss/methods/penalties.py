"""Norm Loss and the weight-decay baseline, as Keras regularizers."""

import math
import numbers

import keras
from keras import ops

from keras_normloss import norms


def validate_factor(value, name):
    """Returns `value` as a Python float, or raises a Keras-style ValueError.

    Accepts Python and NumPy real numbers that are finite and >= 0.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a non-negative "
            f"finite float. Received: {name}={value!r}"
        )
    return float(value)


@keras.saving.register_keras_serializable(package="keras_normloss")
class NormLoss(keras.regularizers.Regularizer):
    """Norm Loss: pulls every output channel's weight vector to unit norm.

    From Georgiou, Schmitt, Bäck, Chen and Lew, "Norm Loss: An efficient yet
    effective regularization method for deep neural networks", ICPR 2020
    (arXiv 2103.06583). For a kernel with output channels `c`:

        loss = factor * sum_c (1 - ||w_c||)**2
        d loss / d w = 2 * factor * w * (1 - 1 / ||w_c||)     (paper eq. 6)

    so it acts as weight decay on channels longer than 1 and as weight growth
    on channels shorter than 1, steering the kernel toward the oblique
    manifold (every channel of unit norm).

    The penalty is computed in float32 for 16-bit kernels (float16, bfloat16,
    mixed-precision policies) and returned as a float32 scalar; float64
    kernels stay in float64.

    At an all-zero channel the norm is undefined; the norm is computed as
    `sqrt(sum(w**2) + 1e-30)`, so such a channel contributes `factor` to the
    loss and has gradient exactly zero (a subgradient: no direction is
    preferred). Its value and gradient are finite.

    How strong `factor` must be: with SGD at learning rate `lr`, a channel's
    norm relaxes toward 1 with a time constant of about `1 / (2 * lr * factor)`
    steps (500 steps at lr 0.1, factor 1e-2; 5,000 at factor 1e-3). A run
    much shorter than that never reaches the manifold.

    Args:
        factor: the regularization factor λ, a non-negative float.
        axis: the axes that make up one output channel's weight vector.
            `None` (default) means every axis but the last, right for Dense,
            Conv1D/2D/3D and the pointwise kernel of separable convolutions.
            Use `(0, 1)` for a DepthwiseConv2D kernel and `(0, 1, 3)` for a
            Conv2DTranspose kernel; `keras_normloss.attach` and
            `keras_normloss.output_channel_axes` pick the right one per layer.

    Raises:
        ValueError: if `factor` is negative, NaN, infinite or not a number, or
            `axis` is not None, an int or a tuple of distinct ints. When called:
            if an axis is out of range for the kernel, or `axis=None` and the
            kernel has rank < 2.

    Example:

    ```python
    layer = keras.layers.Conv2D(64, 3, kernel_regularizer=NormLoss(1e-3))
    dw = keras.layers.DepthwiseConv2D(3, depthwise_regularizer=NormLoss(1e-3, axis=(0, 1)))
    ```
    """

    def __init__(self, factor=1e-3, axis=None):
        self.factor = validate_factor(factor, "factor")
        self.axis = norms.normalize_axis(axis)

    def __call__(self, x):
        norms_ = norms.channel_norms(x, self.axis)
        return ops.cast(self.factor, norms_.dtype) * ops.sum(ops.square(1.0 - norms_))

    def get_config(self):
        return {
            "factor": self.factor,
            "axis": None if self.axis is None else list(self.axis),
        }

    def __repr__(self):
        return f"NormLoss(factor={self.factor!r}, axis={self.axis!r})"


def weight_decay(wd):
    """Weight decay in the paper/PyTorch convention: gradient `wd * w`.

    Keras's `L2(l2)` adds `l2 * sum(w**2)`, whose gradient is `2 * l2 * w`;
    PyTorch's `SGD(weight_decay=wd)` and the Norm Loss paper add `wd * w` to
    the gradient. So a paper's weight decay `wd` is `keras.regularizers.L2(wd /
    2)`. Using `L2(wd)` doubles every weight-decay baseline.

    This is coupled weight decay (added to the loss, so it passes through
    momentum), as in the papers' SGD runs. It is not the decoupled
    `weight_decay` argument of Keras optimizers, which differs from it once
    momentum is used.

    The result is a plain `keras.regularizers.L2`, so a model saved with it
    loads without keras-normloss.

    Args:
        wd: the weight decay, a non-negative float (1e-4 for the papers'
            CIFAR ResNets, 5e-4 for Wide ResNets).

    Returns:
        `keras.regularizers.L2(wd / 2)`.

    Raises:
        ValueError: if `wd` is negative, NaN, infinite or not a number.

    Example:

    ```python
    layer = keras.layers.Dense(10, kernel_regularizer=weight_decay(5e-4))
    ```
    """
    return keras.regularizers.L2(validate_factor(wd, "wd") / 2.0)
