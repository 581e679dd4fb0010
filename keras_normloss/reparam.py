"""Kernel reparametrizations: wrappers that compute the kernel a layer uses from raw variables.

The peers of Norm Loss that do not penalise or project the kernel but
reparametrize it:

- `WeightNorm`: weight normalization (Salimans & Kingma, NeurIPS 2016),
  `w_c = g_c * v_c / ||v_c||`;
- `ONI`: orthogonalization by Newton's iteration (Huang et al., CVPR 2020);
- `OrthogonalWeightNorm` (OLM/OWN): orthogonal weight normalization by
  eigendecomposition (Huang et al., AAAI 2018).

Each is a `keras.layers.Wrapper`. On every call, in training and inference
alike, it computes the kernel from the raw variables (the inner layer's
`kernel`, here `v`, and the wrapper's per-channel `scale`) and runs the inner
layer with that kernel substituted through a `keras.StatelessScope`, so
gradients flow through the normalization to `v` and `scale` and nothing is
assigned in `call`. (Keras's own `SpectralNormalization` assigns the
normalized kernel in `call(training=True)`, which on TensorFlow skips the
normalization in the gradient and on JAX leaves inference unnormalized.)

Every kernel is viewed as rows `Z` of shape `(out, d)`: row `c` holds every
weight feeding output channel `c`, with the axes taken from
`keras_normloss.norms` (the PyTorch references' `weight.view(out, -1)`).
`data_dependent_init` is Salimans & Kingma's initialization for `WeightNorm`;
`keras_normloss.reparam_model.reparametrize` applies a wrapper to the layers
of an existing model.
"""

import dataclasses
import math
import numbers
import warnings

import keras
import numpy as np
from keras import ops

from keras_normloss import norms
from keras_normloss.norms import UnsupportedLayerError

# Every single-kernel entry of the axis table in `norms`. Separable
# convolutions (two kernels) are left out: which one to reparametrize is not
# defined by the references.
_ROW_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
# Orthogonalizing rows is meaningful only where every output channel sees the
# same inputs. A depthwise kernel's channels (and filters in different groups
# of a grouped convolution) read disjoint inputs: the layer's full weight
# matrix is block-diagonal and already orthogonal across them, and whitening
# their taps against each other would mix unrelated filters.
_ORTHOGONAL_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)

# The references' ONI settings (Huang et al., CVPR 2020; code at
# github.com/huangleiBuaa/ONI). Use as `ONI(layer, **ONI_PRESETS[name])`.
#   cifar_resnet_no_bn: CIFAR-10 ResNet-110 with every BatchNormalization removed
#       (ONI_Torch/experiments/execute_CNN_res_ONI.sh, models/CNN/res_ONI_scale.lua).
#   cifar_vgg_no_bn: the VGG-style CIFAR-10 network without BN
#       (execute_CNN_P0_ONI.sh, P0_ONI_scale.lua; groups of 384 channels).
#   imagenet_resnet: ImageNet ResNet-18/50 with BN, one group per layer
#       (ONI_PyTorch/ImageNet/experiments/resnet50_var_ONI.sh).
ONI_PRESETS = {
    "cifar_resnet_no_bn": {
        "iterations": 5,
        "group_size": 64,
        "scale_init": 0.8,
        "learnable_scale": True,
    },
    "cifar_vgg_no_bn": {
        "iterations": 5,
        "group_size": 384,
        "scale_init": 1.414,
        "learnable_scale": True,
    },
    "imagenet_resnet": {
        "iterations": 2,
        "group_size": None,
        "scale_init": 1.414,
        "learnable_scale": True,
    },
}


def _positive_int(value, name, allow_none=False, minimum=1):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(
            f"Invalid value for argument `{name}`: expected {expected}. Received: {name}={value!r}"
        )
    return int(value)


def _float(value, name, positive, allow_none=False):
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        kind = "positive" if positive else "non-negative"
        expected = f"a {kind} finite float" + (" or None" if allow_none else "")
        raise ValueError(
            f"Invalid value for argument `{name}`: expected {expected}. Received: {name}={value!r}"
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class _RowLayout:
    """How a kernel maps to rows `(out, d)` and back: a transpose and a reshape."""

    shape: tuple
    perm: tuple  # the output-channel axes first, then the reduction axes
    out: int
    fan_in: int

    @classmethod
    def of(cls, shape, axes):
        shape = tuple(int(s) for s in shape)
        channels = tuple(i for i in range(len(shape)) if i not in axes)
        return cls(
            shape=shape,
            perm=channels + tuple(axes),
            out=math.prod(shape[i] for i in channels),
            fan_in=math.prod(shape[i] for i in axes),
        )

    def to_rows(self, kernel):
        return ops.reshape(ops.transpose(kernel, self.perm), (self.out, self.fan_in))

    def from_rows(self, rows):
        permuted = ops.reshape(rows, tuple(self.shape[i] for i in self.perm))
        return ops.transpose(permuted, tuple(int(i) for i in np.argsort(self.perm)))


def orthogonal_group_size(out, fan_in, group_size):
    """The number of rows per group that ONI and OLM actually use.

    Both methods centre each row (subtract its mean over the fan-in), which
    puts it in the `(d - 1)`-dimensional subspace orthogonal to the all-ones
    vector. A group of more than `d - 1` rows is then rank-deficient: it
    cannot be orthonormal, and its covariance is singular, which gives NaN
    without an epsilon and dead (near-zero) channels with one. So a group
    holds `min(group_size, out, d - 1)` rows (`group_size=None`: all `out`
    rows, then the same clip). The Torch references clip to `d`; `d - 1` is
    the bound that keeps every group full-rank. Groups are contiguous blocks
    of output channels and the last one may be smaller.

    Full rank is not good conditioning: a near-square group (`m` close to
    `d`, e.g. a 1x1 convolution with more outputs than inputs) often has a
    tiny smallest singular value (measured, 1x1 conv 16 -> 32, random
    normal kernel: eigenvalues of `Zc Zcᵀ` from 5e-5 to 50 in one group).
    OLM still whitens it (up to `eps` and float32 round-off); ONI with a
    small `T` leaves such directions short. A smaller `group_size` avoids
    it.

    Args:
        out: the number of output channels (rows).
        fan_in: `d`, the number of weights feeding each output channel.
        group_size: the requested group size, or `None` for one group.

    Returns:
        The group size, an int >= 1.

    Raises:
        ValueError: if `fan_in < 2`: a centred row of one weight is zero.

    Example:

    ```python
    orthogonal_group_size(32, 16, 64)  # a 1x1 conv 16 -> 32: groups of 15
    ```
    """
    if fan_in < 2:
        raise UnsupportedLayerError(
            "Invalid value for argument `fan_in`: expected an int >= 2; ONI and OLM "
            "centre each output channel's weights over the fan-in, which leaves "
            f"nothing to orthogonalize for a single weight. Received: fan_in={fan_in}"
        )
    requested = out if group_size is None else group_size
    return max(1, min(requested, out, fan_in - 1))


def _per_group(rows, group, fn):
    """Applies `fn` (batched `(g, m, d) -> (g, m, d)`) to contiguous row groups."""
    out, fan_in = rows.shape
    full = out // group
    rest = out - full * group
    parts = []
    if full:
        blocks = ops.reshape(rows[: full * group], (full, group, fan_in))
        parts.append(ops.reshape(fn(blocks), (full * group, fan_in)))
    if rest:
        blocks = ops.reshape(rows[full * group :], (1, rest, fan_in))
        parts.append(ops.reshape(fn(blocks), (rest, fan_in)))
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)


def _centre(z):
    return z - ops.mean(z, axis=-1, keepdims=True)


def _gram(zc, eps):
    m = zc.shape[-2]
    s = ops.matmul(zc, ops.swapaxes(zc, -1, -2))
    return s + ops.cast(eps, s.dtype) * ops.eye(m, dtype=s.dtype)


@ops.custom_gradient
def _inverse_sqrt_psd(s):
    """`S^(-1/2)` of a batch of symmetric positive-definite matrices.

    Differentiating through `eigh` gives terms `1 / (λ_i − λ_j)`, infinite
    when two eigenvalues coincide (JAX then returns NaN; it happens e.g. when
    a group's rows are already orthogonal with equal norms). The gradient of
    a matrix function has a closed form without them (Daleckii–Krein): for
    `f(λ) = λ^(-1/2)` and `r = sqrt(λ)`, the divided difference
    `(f(λ_i) − f(λ_j)) / (λ_i − λ_j) = −1 / (r_i r_j (r_i + r_j))`, which
    also equals `f'(λ_i)` at `i = j`.
    """
    eigenvalues, u = ops.eigh(s)
    tiny = np.finfo(keras.backend.standardize_dtype(s.dtype)).tiny
    r = ops.sqrt(ops.maximum(eigenvalues, tiny))
    ut = ops.swapaxes(u, -1, -2)
    result = ops.matmul(u / ops.expand_dims(r, -2), ut)

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        ri, rj = ops.expand_dims(r, -1), ops.expand_dims(r, -2)
        divided_differences = -1.0 / (ri * rj * (ri + rj))
        upstream = 0.5 * (upstream + ops.swapaxes(upstream, -1, -2))
        inner = ops.matmul(ops.matmul(ut, upstream), u) * divided_differences
        return ops.matmul(ops.matmul(u, inner), ut)

    return result, grad


class KernelReparametrization(keras.layers.Wrapper):
    """Base class: a wrapper whose layer's kernel is a function of raw variables.

    The inner layer keeps its own `kernel` variable `v` (and bias). The
    wrapper adds a per-output-channel `scale` and, on every call, computes

        W = scale_c * normalize(Z)_c       Z: v as rows (out, d)

    and runs the inner layer with `W` in place of `v` inside a
    `keras.StatelessScope`. `v` is never overwritten: the optimizer updates
    `v` and `scale` with gradients taken through `normalize`, and inference
    uses the same `W` as training. Subclasses define `normalize`.

    Notes: an inner `kernel_regularizer` or `kernel_constraint` acts on `v`,
    not on `W`; the inner layer's activity-regularization losses are kept.
    The inner layer must not update state in its `call` (Dense and
    convolutions do not): such updates would be dropped by the scope.

    Args:
        layer: the layer to wrap, of a kind the subclass supports.
        scale_init: the initial value of every channel's scale, a positive
            float.
        learnable_scale: whether the scale is trained; if False it is a
            non-trainable variable (saved with the model).
        **kwargs: base layer arguments (`name`, `dtype`, ...). The name
            defaults to the wrapper's kind and the inner layer's name, and the
            dtype to the inner layer's dtype policy.

    Raises:
        ValueError: for an argument out of range, or `UnsupportedLayerError`
            (a `ValueError`) for a layer the wrapper cannot reparametrize.

    Example:

    ```python
    layer = WeightNorm(keras.layers.Conv2D(16, 3))
    y = layer(np.ones((2, 8, 8, 3), "float32"))
    layer.effective_kernel().shape  # (3, 3, 3, 16), rows of norm `scale`
    ```
    """

    supported_layers = _ROW_LAYERS
    _name_prefix = "kernel_reparametrization"

    def __init__(self, layer, scale_init=1.0, learnable_scale=True, **kwargs):
        self._check_layer(layer)
        kwargs.setdefault("name", f"{self._name_prefix}_{layer.name}")
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.scale_init = self._validate_scale_init(scale_init)
        if not isinstance(learnable_scale, bool):
            raise ValueError(
                "Invalid value for argument `learnable_scale`: expected a bool. "
                f"Received: learnable_scale={learnable_scale!r}"
            )
        self.learnable_scale = learnable_scale
        self._kernel_name = norms.layer_kernels(layer)[0].name
        self._layout = None

    def _validate_scale_init(self, scale_init):
        return _float(scale_init, "scale_init", positive=True)

    @classmethod
    def _check_layer(cls, layer):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Invalid value for argument `layer`: expected a keras.layers.Layer. "
                f"Received: layer={layer!r}"
            )
        if isinstance(layer, KernelReparametrization):
            raise UnsupportedLayerError(
                f"Invalid value for argument `layer`: layer '{layer.name}' is already "
                f"reparametrized ({type(layer).__name__}); wrap the inner layer instead. "
                f"Received: layer={layer.name} of type {type(layer).__name__}"
            )
        if not isinstance(layer, cls.supported_layers):
            names = ", ".join(t.__name__ for t in cls.supported_layers)
            raise UnsupportedLayerError(
                f"Invalid value for argument `layer`: {cls.__name__} supports {names}. "
                f"Received: layer={layer.name} of type {type(layer).__name__}"
            )
        # Raises UnsupportedLayerError for quantized and LoRA-enabled layers.
        slots = norms.layer_kernels(layer)
        if len(slots) != 1:
            raise UnsupportedLayerError(
                f"Invalid value for argument `layer`: layer '{layer.name}' has "
                f"{len(slots)} kernels. Received: layer={layer.name} of type "
                f"{type(layer).__name__}"
            )
        if layer.built:
            cls._check_shape(layer, _RowLayout.of(slots[0].variable.shape, slots[0].axes))

    @classmethod
    def _check_shape(cls, layer, layout):
        """Subclass hook: rejects kernel shapes the method cannot handle."""

    def build(self, input_shape=None):
        super().build(input_shape)
        slot = norms.layer_kernels(self.layer)[0]
        self._layout = _RowLayout.of(slot.variable.shape, slot.axes)
        self._check_shape(self.layer, self._layout)
        self.scale = self.add_weight(
            name="scale",
            shape=(self._layout.out,),
            initializer=self._scale_initializer(slot.variable),
            trainable=self.learnable_scale,
        )
        self.built = True

    def _scale_initializer(self, kernel):
        return keras.initializers.Constant(self.scale_init)

    def _kernel_variable(self):
        # Read through the inner layer on each use: keeping the variable as
        # an attribute of the wrapper would make Keras track it twice, and a
        # `.keras` file would store it twice.
        return getattr(self.layer, self._kernel_name)

    def normalize(self, rows):
        """Maps rows `Z (out, d)` to the normalized rows the kernel is made of.

        Args:
            rows: a float32 or float64 tensor of shape `(out, d)`.

        Returns:
            A tensor of the same shape and dtype.
        """
        raise NotImplementedError

    def _compute_kernel(self, kernel_value, scale_value):
        dtype = norms.compute_dtype(kernel_value.dtype)
        rows = self._layout.to_rows(ops.cast(kernel_value, dtype))
        rows = self.normalize(rows) * ops.expand_dims(ops.cast(scale_value, dtype), -1)
        return ops.cast(self._layout.from_rows(rows), kernel_value.dtype)

    def effective_kernel(self):
        """Returns the kernel the wrapped layer actually computes with.

        Returns:
            A tensor of the inner kernel's shape: `scale_c * normalize(v)_c`
            laid back out in the layer's kernel layout.

        Example:

        ```python
        layer = ONI(keras.layers.Dense(4))
        layer.build((None, 8))
        w = layer.effective_kernel()  # (8, 4), near-orthogonal columns
        ```
        """
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' is not built: call it on an input or "
                "`build(input_shape)` first."
            )
        return self._compute_kernel(self._kernel_variable().value, self.scale.value)

    def call(self, inputs, training=None):
        kernel = self._kernel_variable()
        effective = self._compute_kernel(kernel.value, self.scale.value)
        # Every other inner variable is mapped to its current value as well:
        # only the innermost StatelessScope is consulted, so under an outer
        # scope (JAX's stateless training step) an unmapped variable would be
        # read from the variable itself, not from the traced state.
        mapping = [(v, v.value) for v in self.layer.variables if v is not kernel]
        mapping.append((kernel, effective))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            outputs = self.layer(inputs)
        for loss in scope.losses:  # the inner layer's activity regularization
            self.add_loss(loss)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "scale_init": self.scale_init,
            "learnable_scale": self.learnable_scale,
        }


@keras.saving.register_keras_serializable(package="keras_normloss")
class WeightNorm(KernelReparametrization):
    """Weight normalization: each output channel's kernel is `g_c * v_c / ||v_c||`.

    From Salimans and Kingma, "Weight Normalization: A Simple
    Reparameterization to Accelerate Training of Deep Neural Networks",
    NeurIPS 2016. The direction `v_c` (the inner layer's kernel) and the
    length `g_c` (the wrapper's `scale`) are trained separately; the gradient
    goes through the normalization. By default `g` starts at `||v_c||`, so
    wrapping a layer does not change its function (as PyTorch's
    `weight_norm`); pass `scale_init` for a constant start, and use
    `data_dependent_init` for the paper's initialization from a batch.

    Supported layers: every single-kernel layer of `keras_normloss.norms`'s
    table (Dense, EinsumDense, Conv1D/2D/3D, Conv1D/2D/3DTranspose,
    DepthwiseConv1D/2D), with their output channels taken from that table.

    Args:
        layer: the layer to wrap.
        scale_init: `None` (default) for `g_c = ||v_c||` at build, or a
            positive float for a constant (1.414 in the ONI repository's WN
            baselines).
        learnable_scale: whether `g` is trained (default True).
        **kwargs: base layer arguments.

    Raises:
        ValueError: if `scale_init` is not None or a positive float, or the
            layer is not supported (`UnsupportedLayerError`).

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        WeightNorm(keras.layers.Conv2D(16, 3, activation="relu")),
        keras.layers.GlobalAveragePooling2D(),
        WeightNorm(keras.layers.Dense(10)),
    ])
    ```
    """

    _name_prefix = "weight_norm"

    def __init__(self, layer, scale_init=None, learnable_scale=True, **kwargs):
        super().__init__(layer, scale_init=scale_init, learnable_scale=learnable_scale, **kwargs)
        self._data_init_scale = None

    def _validate_scale_init(self, scale_init):
        return _float(scale_init, "scale_init", positive=True, allow_none=True)

    def _scale_initializer(self, kernel):
        if self.scale_init is not None:
            return keras.initializers.Constant(self.scale_init)
        layout = self._layout

        def current_norms(shape, dtype=None):
            rows = layout.to_rows(ops.convert_to_tensor(kernel.value))
            return ops.cast(norms.channel_norms(rows, axis=1), dtype or kernel.dtype)

        return current_norms

    def normalize(self, rows):
        return rows / norms.channel_norms(rows, axis=1, keepdims=True)

    def call(self, inputs, training=None):
        if self._data_init_scale is not None:
            init_scale, self._data_init_scale = self._data_init_scale, None
            self._initialize_from_batch(inputs, init_scale)
        return super().call(inputs, training=training)

    def _initialize_from_batch(self, inputs, init_scale):
        """Sets `g` and the bias from this batch (openai/weightnorm form).

        The pre-activations of the unit-norm direction, t = x · v/||v||, are
        computed first; then g = init_scale / sqrt(var(t) + 1e-8) and
        b = -mean(t) * g, so that g·t + b has mean 0 and std init_scale per
        channel. (TFA's `data_init` ran the raw v instead of v/||v||, which
        leaves the std at init_scale / ||v_c||.)
        """
        if not ops.is_tensor(inputs) and not isinstance(inputs, np.ndarray):
            inputs = ops.convert_to_tensor(inputs)
        layer = self.layer
        kernel = self._kernel_variable()
        bias = getattr(layer, "bias", None)
        direction = self._compute_kernel(kernel.value, ops.ones((self._layout.out,)))
        mapping = [(v, v.value) for v in layer.variables if v is not kernel and v is not bias]
        mapping.append((kernel, direction))
        if bias is not None:
            mapping.append((bias, ops.zeros(bias.shape, bias.dtype)))
        activation, layer.activation = layer.activation, None
        try:
            with keras.StatelessScope(state_mapping=mapping):
                t = layer(inputs)
        finally:
            layer.activation = activation
        t = ops.cast(t, "float32")
        channel_axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
        channel_axis = channel_axis % len(t.shape)
        if t.shape[channel_axis] != self._layout.out:
            raise ValueError(
                f"data_dependent_init cannot tell the output channels of layer "
                f"'{layer.name}' ({type(layer).__name__}): its output has shape "
                f"{tuple(t.shape)} for {self._layout.out} kernel channels."
            )
        axes = tuple(i for i in range(len(t.shape)) if i != channel_axis)
        mean = ops.mean(t, axis=axes)
        variance = ops.var(t, axis=axes)
        g = init_scale / ops.sqrt(variance + 1e-8)
        self.scale.assign(ops.cast(g, self.scale.dtype))
        if bias is not None:
            bias.assign(ops.cast(-mean * g, bias.dtype))


class _CentredOrthogonalization(KernelReparametrization):
    """Shared by ONI and OLM: centred rows, orthogonalized per group."""

    supported_layers = _ORTHOGONAL_LAYERS

    @classmethod
    def _check_layer(cls, layer):
        super()._check_layer(layer)
        if getattr(layer, "groups", 1) != 1:
            raise UnsupportedLayerError(
                f"Invalid value for argument `layer`: {cls.__name__} needs every "
                "output channel to see the same inputs, but "
                f"'{layer.name}' is a grouped convolution. Received: "
                f"layer={layer.name} of type {type(layer).__name__} with groups={layer.groups}"
            )

    @classmethod
    def _check_shape(cls, layer, layout):
        if layout.fan_in < 2:
            raise UnsupportedLayerError(
                f"Invalid value for argument `layer`: {cls.__name__} centres each output "
                "channel's weights over the fan-in, which leaves nothing to orthogonalize "
                f"for layer '{layer.name}' with a fan-in of {layout.fan_in}. "
                f"Received: layer={layer.name} of type {type(layer).__name__}"
            )

    def normalize(self, rows):
        group = orthogonal_group_size(rows.shape[0], rows.shape[1], self.group_size)
        return _per_group(rows, group, self._orthogonalize_group)

    def _orthogonalize_group(self, z):
        """Batched `(g, m, d) -> (g, m, d)`."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="keras_normloss")
class ONI(_CentredOrthogonalization):
    """Orthogonalization by Newton's iteration: near-orthonormal rows, then a scale.

    From Huang, Liu, Zhu, Wan, Yuan, Li and Shao, "Controllable
    Orthogonalization in Training DNNs", CVPR 2020, as in the reference
    PyTorch `ONINorm` (github.com/huangleiBuaa/ONI). Per group of rows `Z`
    (`(m, d)`, see `orthogonal_group_size`):

        Zc = Z − rowmean(Z);  S = Zc Zcᵀ + eps·I;  Ŝ = S / ||S||_F
        B_0 = I;  B_{t+1} = 1.5·B_t − 0.5·B_t³ Ŝ     (t < T = iterations)
        W = scale_c · (B_T Zc / sqrt(||S||_F))_c

    `B_T → Ŝ^(-1/2)`, so the rows of `W / scale` tend to an orthonormal set;
    `T` controls how closely (the paper's point: with T = 5 the rows are only
    approximately orthonormal). The scale is per channel, initialised to
    `scale_init` and trained if `learnable_scale`.

    Each step stretches a small eigenvalue's direction by at most 1.5, so an
    ill-conditioned group needs many steps; but this uncoupled iteration (the
    reference's) is numerically unstable for large `T` on such groups:
    measured on a 1x1 conv 16 -> 32, it overflows from `T` ≈ 14 even in
    float64. Keep `T` small, as the references do (2 to 5).

    Groups hold at most `d − 1` rows, since centred rows span at most `d − 1`
    dimensions (see `orthogonal_group_size`); a 1×1 conv 16 → 32 gets groups
    of 15, 15 and 2 rather than one rank-deficient group with dead channels.
    The PyTorch reference switches to a column form instead, which is not
    implemented here.

    Reference settings are in `ONI_PRESETS` (CIFAR ResNet-110 without BN:
    T=5, groups of 64, scale 0.8; ImageNet ResNets: T=2, one group, 1.414).

    Supported layers: Dense, EinsumDense, Conv1D/2D/3D with `groups=1`.

    Args:
        layer: the layer to wrap.
        iterations: `T`, the number of Newton steps, an int >= 1 (default 5).
        group_size: rows per group, an int >= 1, or `None` for one group
            (default 64); clipped to `min(group_size, out, d − 1)`.
        scale_init: the initial per-channel scale, a positive float (default
            1.414, the reference's `NScale`).
        learnable_scale: whether the scale is trained (default True).
        eps: added to the diagonal of `S` before normalization, a non-negative
            float (default 1e-5 as in the reference).
        **kwargs: base layer arguments.

    Raises:
        ValueError: for an argument out of range; `UnsupportedLayerError` for an
            unsupported layer, a grouped convolution, or a fan-in below 2.

    Example:

    ```python
    conv = ONI(keras.layers.Conv2D(16, 3, use_bias=False), **ONI_PRESETS["cifar_resnet_no_bn"])
    y = conv(np.ones((2, 8, 8, 3), "float32"))
    ```
    """

    _name_prefix = "oni"

    def __init__(
        self,
        layer,
        iterations=5,
        group_size=64,
        scale_init=1.414,
        learnable_scale=True,
        eps=1e-5,
        **kwargs,
    ):
        super().__init__(layer, scale_init=scale_init, learnable_scale=learnable_scale, **kwargs)
        self.iterations = _positive_int(iterations, "iterations")
        self.group_size = _positive_int(group_size, "group_size", allow_none=True)
        self.eps = _float(eps, "eps", positive=False)

    def _orthogonalize_group(self, z):
        zc = _centre(z)
        s = _gram(zc, self.eps)
        norm_s = ops.sqrt(ops.sum(ops.square(s), axis=(-2, -1), keepdims=True))
        s = s / norm_s
        b = ops.broadcast_to(ops.eye(s.shape[-1], dtype=s.dtype), s.shape)
        for _ in range(self.iterations):
            b3 = ops.matmul(ops.matmul(b, b), b)
            b = 1.5 * b - 0.5 * ops.matmul(b3, s)
        return ops.matmul(b, zc) / ops.sqrt(norm_s)

    def get_config(self):
        return {
            **super().get_config(),
            "iterations": self.iterations,
            "group_size": self.group_size,
            "eps": self.eps,
        }


@keras.saving.register_keras_serializable(package="keras_normloss")
class OrthogonalWeightNorm(_CentredOrthogonalization):
    """Orthogonal weight normalization (OLM/OWN): exactly orthonormal rows per group.

    From Huang, Liu, Lang, Yu, Wang and Li, "Orthogonal Weight Normalization:
    Solution to Optimization over Multiple Dependent Stiefel Manifolds in Deep
    Neural Networks", AAAI 2018 (code: github.com/huangleiBuaa/OthogonalWN).
    Per group of rows `Z` (`(m, d)`, see `orthogonal_group_size`), a centred
    ZCA whitening:

        Zc = Z − rowmean(Z);  W = scale_c · ((Zc Zcᵀ + eps·I)^(-1/2) Zc)_c

    computed with `keras.ops.eigh`, so `W Wᵀ = I` within a group (up to
    `eps`) and every row has unit length times its scale. The gradient of
    `S^(-1/2)` uses its closed form, finite when eigenvalues coincide.

    Groups hold at most `d − 1` rows (see `orthogonal_group_size`): a
    larger group is rank-deficient after centring, and the PyTorch OWN code
    (no eps) returns NaN there. The Torch OLM has no scale, hence
    `scale_init=1.0, learnable_scale=False` by default; the PyTorch OWN
    uses a learnable scale initialised to 1.414.

    "OLM-L1" in the papers is OLM on the first convolution only: use
    `reparametrize(model, OrthogonalWeightNorm, where=...)` on the stem.

    Supported layers: Dense, EinsumDense, Conv1D/2D/3D with `groups=1`.

    Args:
        layer: the layer to wrap.
        group_size: rows per group, an int >= 1, or `None` for one group
            (default 64, every OLM script's `m_perGroup`); clipped to
            `min(group_size, out, d − 1)`.
        scale_init: the initial per-channel scale, a positive float (default 1).
        learnable_scale: whether the scale is trained (default False).
        eps: added to the diagonal of `Zc Zcᵀ`, a non-negative float (default
            1e-5, as ONI; the PyTorch OWN has none, the Torch OLM adds 1e-8 to
            `Zc Zcᵀ / d`). It is absolute: a direction with eigenvalue `λ`
            of `Zc Zcᵀ` comes out with length `sqrt(λ / (λ + eps))`, so
            kernels with very small weights are shrunk rather than whitened.
        **kwargs: base layer arguments.

    Raises:
        ValueError: for an argument out of range; `UnsupportedLayerError` for an
            unsupported layer, a grouped convolution, or a fan-in below 2.

    Example:

    ```python
    stem = OrthogonalWeightNorm(keras.layers.Conv2D(16, 3, use_bias=False))
    y = stem(np.ones((2, 32, 32, 3), "float32"))  # 16 orthonormal 27-d filters
    ```
    """

    _name_prefix = "orthogonal_weight_norm"

    def __init__(
        self,
        layer,
        group_size=64,
        scale_init=1.0,
        learnable_scale=False,
        eps=1e-5,
        **kwargs,
    ):
        super().__init__(layer, scale_init=scale_init, learnable_scale=learnable_scale, **kwargs)
        self.group_size = _positive_int(group_size, "group_size", allow_none=True)
        self.eps = _float(eps, "eps", positive=False)

    def _orthogonalize_group(self, z):
        zc = _centre(z)
        return ops.matmul(_inverse_sqrt_psd(_gram(zc, self.eps)), zc)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size, "eps": self.eps}


def data_dependent_init(model, x, init_scale=1.0):
    """Initialises every `WeightNorm` in a model from one batch (Salimans & Kingma).

    Runs `x` through the model once, eagerly and in inference mode. Each
    `WeightNorm` layer, the first time the batch reaches it, computes its
    pre-activations with the unit-norm direction, `t = x · v/||v||`, and sets

        g = init_scale / sqrt(var(t) + 1e-8),     b = −mean(t) · g

    (statistics per output channel over the batch and spatial axes), so that
    its pre-activations on this batch have mean 0 and standard deviation
    `init_scale`. Later layers see the outputs of the already initialised
    earlier ones, as in the paper. This is the openai/weightnorm form;
    TensorFlow Addons normalized with the raw `v`, which leaves the standard
    deviation at `init_scale / ||v_c||`. A layer without a bias gets only
    its scale (its pre-activations keep their mean). `g` is set even if it
    is not learnable.

    Args:
        model: a model or layer containing `WeightNorm` layers.
        x: a batch the model accepts (array, tensor or structure of them).
        init_scale: the target standard deviation, a positive float.

    Returns:
        The names of the `WeightNorm` layers that were initialised.

    Raises:
        ValueError: if `init_scale` is not a positive float or the model has
            no `WeightNorm` layer.

    Example:

    ```python
    model = keras.Sequential([keras.Input((8,)), WeightNorm(keras.layers.Dense(4))])
    data_dependent_init(model, np.random.normal(size=(64, 8)))  # ['weight_norm_dense']
    ```
    """
    init_scale = _float(init_scale, "init_scale", positive=True)
    layers = [
        layer for layer in model._flatten_layers(include_self=True) if isinstance(layer, WeightNorm)
    ]
    if not layers:
        raise ValueError(
            "Invalid value for argument `model`: expected a model with at least one "
            f"WeightNorm layer. Received: model={getattr(model, 'name', model)!r}"
        )
    for layer in layers:
        layer._data_init_scale = init_scale
    try:
        model(x, training=False)
    finally:
        missed = [layer.name for layer in layers if layer._data_init_scale is not None]
        for layer in layers:
            layer._data_init_scale = None
    if missed:
        warnings.warn(
            f"data_dependent_init: the batch never reached {missed}; they keep their scale.",
            UserWarning,
            stacklevel=2,
        )
    return [layer.name for layer in layers if layer.name not in missed]
