"""What the papers' networks share: their conv/BN/Dense settings and option-A shortcuts."""

import contextlib
import sys

import keras
import numpy as np
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


# How the references draw their weights; each model builder names the one its
# reference uses, and documents it.
CONV_INITS = ("fan_out", "fan_in")
CLASSIFIER_BIAS_INITS = ("zeros", "uniform")
BN_GAMMA_INITS = ("ones", "uniform")


def layer_seeds(seed):
    """An endless stream of initialiser seeds for one model, from its run seed.

    Layer i gets a 31-bit hash of `(seed, i)` (NumPy's `SeedSequence`), so the
    streams of two run seeds share no layer seed: with `seed + i`, the run
    with seed 1 drew, layer by layer, the kernels seed 0 drew for the next
    layer (103 of ResNet-110's 110 kernels were bit-identical).
    """
    i = 0
    while True:
        i += 1
        yield int(np.random.SeedSequence([seed, i]).generate_state(1)[0] % 2**31)


class LayerFactory:
    """Makes the layers of one network with the options it was built with.

    Conv2D: no bias; the kernel drawn from N(0, 2 / fan) (He et al., 2015, not
    truncated, as Torch's `normal` and PyTorch's `kaiming_normal_`), with fan
    `k * k * C_out` ("fan_out": torchvision's ResNet, fb.resnet.torch and the
    WRN/PBWN/OLM Torch code) or `k * k * C_in` ("fan_in"). A strided
    convolution with a kernel larger than 1 is padded explicitly and
    symmetrically by `(k - 1) // 2`, as PyTorch's `padding=k // 2`: Keras's
    "same" pads only after when the stride is 2 on an even input, which puts
    the kernel's centre one pixel off the shortcut's subsampled pixel.
    BatchNormalization: beta 0, gamma 1 (fb.resnet.torch's `BNInit`,
    torchvision) or U(0, 1) (Torch's `nn.BatchNormalization` default, which
    the WRN code keeps). Dense: the kernel drawn as PyTorch/Torch's default (uniform
    +-1/sqrt(fan_in)); the bias zero (Torch references) or uniform
    +-1/sqrt(fan_in) (torchvision, PyTorch's default).
    Every initialiser and dropout layer gets its own seed from `layer_seeds`,
    so a seeded model is reproducible and two seeds share no draw.
    """

    def __init__(
        self,
        *,
        bn_momentum,
        bn_epsilon,
        synchronized_bn,
        seed,
        conv_init="fan_out",
        classifier_bias_init="zeros",
        bn_gamma_init="ones",
    ):
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
        if conv_init not in CONV_INITS:
            raise ValueError(
                f"Invalid value for argument `conv_init`: expected one of {CONV_INITS}. "
                f"Received: conv_init={conv_init!r}"
            )
        if classifier_bias_init not in CLASSIFIER_BIAS_INITS:
            raise ValueError(
                "Invalid value for argument `classifier_bias_init`: expected one of "
                f"{CLASSIFIER_BIAS_INITS}. Received: classifier_bias_init={classifier_bias_init!r}"
            )
        if bn_gamma_init not in BN_GAMMA_INITS:
            raise ValueError(
                f"Invalid value for argument `bn_gamma_init`: expected one of {BN_GAMMA_INITS}. "
                f"Received: bn_gamma_init={bn_gamma_init!r}"
            )
        self.bn_gamma_init = bn_gamma_init
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.synchronized_bn = synchronized_bn
        self.conv_init = conv_init
        self.classifier_bias_init = classifier_bias_init
        self._seeds = None if seed is None else layer_seeds(seed)

    def _next_seed(self):
        return None if self._seeds is None else next(self._seeds)

    def conv(self, filters, kernel_size, strides=1, *, name):
        """A Conv2D (as a callable on a tensor), padded as PyTorch pads."""
        conv_padding = "same"
        pad = None
        if strides > 1 and kernel_size > 1:
            pad = keras.layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad")
            conv_padding = "valid"
        conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=conv_padding,
            use_bias=False,
            kernel_initializer=keras.initializers.VarianceScaling(
                2.0, self.conv_init, "untruncated_normal", seed=self._next_seed()
            ),
            name=name,
        )
        return conv if pad is None else (lambda x: conv(pad(x)))

    def bn(self, *, name):
        gamma = "ones"
        if self.bn_gamma_init == "uniform":
            gamma = keras.initializers.RandomUniform(0.0, 1.0, seed=self._next_seed())
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum,
            gamma_initializer=gamma,
            epsilon=self.bn_epsilon,
            synchronized=self.synchronized_bn,
            name=name,
        )

    def dropout(self, rate, *, name):
        return keras.layers.Dropout(rate, seed=self._next_seed(), name=name)

    def dense(self, units, *, fan_in, name):
        bound = 1.0 / np.sqrt(fan_in)
        if self.classifier_bias_init == "uniform":
            bias = keras.initializers.RandomUniform(-bound, bound, seed=self._next_seed())
        else:
            bias = "zeros"
        return keras.layers.Dense(
            units,
            # variance 1/(3 fan_in), uniform: limits +-1/sqrt(fan_in)
            kernel_initializer=keras.initializers.VarianceScaling(
                1.0 / 3.0, "fan_in", "uniform", seed=self._next_seed()
            ),
            bias_initializer=bias,
            # Under a mixed policy the logits are computed in float32: they feed a softmax,
            # whose 16-bit rounding Keras's mixed-precision guide warns about (bfloat16 keeps
            # 8 bits of mantissa: a logit of 5 is only known to about 0.03).
            dtype="float32" if keras.config.dtype_policy().name.startswith("mixed_") else None,
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
