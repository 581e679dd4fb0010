"""What the papers' networks share: their conv/BN/Dense settings and option-A shortcuts."""

import contextlib
import sys

import keras
from keras import ops

from keras_normloss.attach import attach


@keras.saving.register_keras_serializable(package="keras_normloss")
class ZeroPadShortcut(keras.layers.Layer):
    """He et al.'s option-A shortcut: subsample by `stride`, zero-pad channels.

    Parameter-free, which is what gives the CIFAR ResNets their published
    parameter counts. The new channels are split evenly before and after the
    existing ones (as in the widely used PyTorch reproduction); where they go
    does not change what the network can represent.

    Args:
        filters: the number of output channels (>= the input's).
        stride: the spatial subsampling factor.
    """

    def __init__(self, filters, stride=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.stride = int(stride)

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else -(-size // self.stride)

        batch, height, width, _ = input_shape
        return (batch, down(height), down(width), self.filters)

    def call(self, x):
        x = x[:, :: self.stride, :: self.stride, :]
        extra = self.filters - x.shape[-1]
        if extra < 0:
            raise ValueError(
                f"Invalid value for argument `filters`: expected at least the "
                f"input's {x.shape[-1]} channels. Received: filters={self.filters}"
            )
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride}


class LayerFactory:
    """Makes the layers of one network with the options it was built with.

    Every Conv2D has no bias and a He-normal kernel (He et al., 2015); the
    Dense kernel is drawn as PyTorch's default (uniform +-1/sqrt(fan_in)), as
    in the papers' code, and its bias starts at zero.
    Each initialiser gets its own seed (`seed + i`), so a seeded model is
    reproducible and no two kernels are drawn alike.
    """

    def __init__(self, *, bn_momentum, bn_epsilon, synchronized_bn, seed):
        if not 0.0 <= bn_momentum < 1.0:
            raise ValueError(
                "Invalid value for argument `bn_momentum`: expected a float in "
                f"[0, 1). Received: bn_momentum={bn_momentum!r}"
            )
        if not bn_epsilon > 0:
            raise ValueError(
                "Invalid value for argument `bn_epsilon`: expected a positive "
                f"float. Received: bn_epsilon={bn_epsilon!r}"
            )
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self._seed = seed
        self._count = 0

    def _next_seed(self):
        if self._seed is None:
            return None
        self._count += 1
        return self._seed + self._count

    def conv(self, filters, kernel_size, strides=1, *, name, padding="same"):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=self._next_seed()),
            name=name,
        )

    def bn(self, *, name):
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            synchronized=self.synchronized_bn,
            name=name,
        )

    def dense(self, units, *, name):
        return keras.layers.Dense(
            units,
            # variance 1/(3 fan_in), uniform: limits +-1/sqrt(fan_in)
            kernel_initializer=keras.initializers.VarianceScaling(
                1.0 / 3.0, "fan_in", "uniform", seed=self._next_seed()
            ),
            name=name,
        )


@contextlib.contextmanager
def deep_graph_recursion_limit(limit=20_000):
    """Lets Keras map a very deep functional graph.

    Keras walks a functional model's graph recursively (one Python frame
    per layer, several per block) when it builds the `keras.Model`; for
    ResNet-1202 that exceeds Python's default limit of 1,000 and raises
    RecursionError. Seen with Keras 3.15.
    """
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def finish(model, kernel_regularizer, kernel_constraint):
    """Puts the regularizer/constraint on every Conv2D and Dense kernel.

    Through `attach`, so the axes come from the one table in
    `keras_normloss.norms`; biases and BatchNormalization are left alone.
    """
    if kernel_regularizer is not None or kernel_constraint is not None:
        attach(
            model,
            kernel_regularizer,
            constraint=kernel_constraint,
            on_unsupported="raise",
        )
    return model


def check_depth(depth, rule, offset, examples):
    """Validates `depth = 6n + offset`; returns n."""
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < 6 + offset
        or (depth - offset) % 6
    ):
        raise ValueError(
            f"Invalid value for argument `depth`: expected {rule} for a "
            f"positive int n ({examples}). Received: depth={depth!r}"
        )
    return (depth - offset) // 6


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a positive int. "
            f"Received: {name}={value!r}"
        )
    return value
