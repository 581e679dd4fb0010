"""Which axes of a kernel feed one output channel, and the channel norms.

This module is the single place that decides axes. Everything else in
keras-normloss (the regularizer, the constraint, `attach`, the monitoring
callback) asks it.

| layer                        | kernel shape              | reduce over              |
|------------------------------|---------------------------|--------------------------|
| Dense                        | (in, units)               | 0                        |
| Conv1D/2D/3D                 | (*k, in/groups, filters)  | all but the last         |
| Conv1D/2D/3DTranspose        | (*k, filters, in)         | all but the second-to-last |
| DepthwiseConv1D/2D           | (*k, in, multiplier)      | the spatial axes         |
| SeparableConv1D/2D depthwise | (*k, in, multiplier)      | the spatial axes         |
| SeparableConv1D/2D pointwise | (*1, in*m, filters)       | all but the last         |
| EinsumDense                  | from the equation         | kernel axes absent from the output |

Note that `keras.constraints.UnitNorm()` defaults to `axis=0`, which is the
right axis for a Dense kernel only; for a 3x3 Conv2D kernel it normalises
columns of the first spatial row. Nothing here inherits that default.
"""

import dataclasses
import numbers

import keras
from keras import ops

from keras_normloss.errors import UnsupportedLayerError

# sqrt(sum(w**2) + _NORM_EPSILON) keeps the norm differentiable at w = 0: the
# gradient there is w / sqrt(eps) = 0 exactly, and for any channel with
# sum(w**2) above ~1e-23 the epsilon is below float32 resolution. It is a
# normal float32 number (the smallest is ~1.2e-38).
_NORM_EPSILON = 1e-30


def _all_but_last(ndim):
    return tuple(range(ndim - 1))


def _all_but_second_to_last(ndim):
    return tuple(i for i in range(ndim) if i != ndim - 2)


def _spatial(ndim):
    return tuple(range(ndim - 2))


@dataclasses.dataclass(frozen=True)
class _KernelRule:
    variable_attr: str
    regularizer_attr: str
    constraint_attr: str
    axes: object  # callable: kernel rank -> reduction axes


_KERNEL = ("kernel", "kernel_regularizer", "kernel_constraint")

# Ordered: the first matching class wins. No two entries are in a subclass
# relation in Keras 3, but the order keeps that safe for user subclasses too.
_LAYER_RULES = (
    (
        (
            keras.layers.Conv1DTranspose,
            keras.layers.Conv2DTranspose,
            keras.layers.Conv3DTranspose,
        ),
        (_KernelRule(*_KERNEL, _all_but_second_to_last),),
    ),
    (
        (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D),
        (
            _KernelRule(
                "depthwise_kernel",
                "depthwise_regularizer",
                "depthwise_constraint",
                _spatial,
            ),
            _KernelRule(
                "pointwise_kernel",
                "pointwise_regularizer",
                "pointwise_constraint",
                _all_but_last,
            ),
        ),
    ),
    (
        (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D),
        (_KernelRule("kernel", "depthwise_regularizer", "depthwise_constraint", _spatial),),
    ),
    (
        (
            keras.layers.Conv1D,
            keras.layers.Conv2D,
            keras.layers.Conv3D,
            keras.layers.Dense,
        ),
        (_KernelRule(*_KERNEL, _all_but_last),),
    ),
)


@dataclasses.dataclass(frozen=True)
class KernelSlot:
    """One kernel of a layer that a channel-wise regularizer can act on.

    Attributes:
        layer: the Keras layer that owns the kernel.
        name: the kernel's attribute name on the layer (`"kernel"`,
            `"depthwise_kernel"`, `"pointwise_kernel"`).
        variable: the kernel variable, or `None` if the layer is not built.
        axes: the reduction axes: every axis but the output channel axes.
        regularizer_attr: the layer attribute (and constructor argument)
            that holds this kernel's regularizer.
        constraint_attr: likewise for the constraint.
    """

    layer: object
    name: str
    variable: object
    axes: tuple
    regularizer_attr: str
    constraint_attr: str


def _einsum_kernel_axes(layer):
    equation = layer.equation.replace(" ", "")
    try:
        inputs, output = equation.split("->")
        _, kernel = inputs.split(",")
    except ValueError:
        kernel, output = "", ""
    if "." in kernel or len(set(kernel)) != len(kernel) or not kernel:
        raise UnsupportedLayerError(
            f"EinsumDense layer '{layer.name}' has equation {layer.equation!r}: "
            "its kernel has an ellipsis or a repeated index, so its output "
            "channels are not well defined."
        )
    axes = tuple(i for i, index in enumerate(kernel) if index not in output)
    if not axes or len(axes) == len(kernel):
        raise UnsupportedLayerError(
            f"EinsumDense layer '{layer.name}' has equation {layer.equation!r}: "
            "a channel needs both contracted kernel indices (the inputs of a "
            "channel) and kernel indices kept in the output (the channels); "
            f"found contracted axes {axes} of kernel '{kernel}'."
        )
    return axes


def layer_kernels(layer):
    """Lists the kernels of a layer with their output-channel reduction axes.

    Args:
        layer: a `keras.layers.Layer`.

    Returns:
        A list of `KernelSlot`, one per kernel the layer owns (two for a
        separable convolution), or an empty list for a layer without a kernel
        in the table of this module (BatchNormalization, pooling, ...).

    Raises:
        UnsupportedLayerError: for a layer of a supported kind in a state whose
            channels are not defined: an EinsumDense with an ill-defined
            equation, a quantized layer, or a layer with LoRA enabled (its
            kernel is frozen and the LoRA factors are not channel-shaped).

    Example:

    ```python
    layer = keras.layers.SeparableConv2D(8, 3)
    layer.build((None, 16, 16, 4))
    [(s.name, s.axes) for s in layer_kernels(layer)]
    # [('depthwise_kernel', (0, 1)), ('pointwise_kernel', (0, 1, 2))]
    ```
    """
    if isinstance(layer, keras.layers.EinsumDense):
        rules = (_KernelRule(*_KERNEL, lambda ndim: _einsum_kernel_axes(layer)),)
    else:
        rules = next(
            (rules for classes, rules in _LAYER_RULES if isinstance(layer, classes)),
            (),
        )
    if not rules:
        return []
    if getattr(layer, "quantization_mode", None):
        raise UnsupportedLayerError(
            f"Layer '{layer.name}' is quantized "
            f"({layer.quantization_mode}); its kernel is not a float tensor."
        )
    if getattr(layer, "lora_enabled", False):
        raise UnsupportedLayerError(
            f"Layer '{layer.name}' has LoRA enabled: its kernel is frozen and "
            "Keras would apply the regularizer to the low-rank factors, whose "
            "columns are not output channels."
        )
    slots = []
    for rule in rules:
        variable = getattr(layer, rule.variable_attr, None) if layer.built else None
        ndim = len(variable.shape) if variable is not None else _unbuilt_rank(layer)
        slots.append(
            KernelSlot(
                layer=layer,
                name=rule.variable_attr,
                variable=variable,
                axes=tuple(rule.axes(ndim)),
                regularizer_attr=rule.regularizer_attr,
                constraint_attr=rule.constraint_attr,
            )
        )
    return slots


def model_kernels(model):
    """Yields the `KernelSlot` of every supported kernel in a model.

    Walks nested models and the sublayers of composite layers; layers whose
    channels are undefined (see `layer_kernels`) are passed over. Use
    `keras_normloss.attach` to be told about them.
    """
    for layer in model._flatten_layers(include_self=True):
        try:
            yield from layer_kernels(layer)
        except UnsupportedLayerError:
            continue


def _unbuilt_rank(layer):
    # Conv-like layers know their spatial rank before they are built.
    rank = getattr(layer, "rank", None)
    return 2 if rank is None else rank + 2


def output_channel_axes(layer, kernel=None):
    """Returns the axes to reduce over to get one norm per output channel.

    Args:
        layer: a Keras layer of a kind listed in this module's table.
        kernel: which of the layer's kernels: the variable itself or its
            attribute name (`"kernel"`, `"depthwise_kernel"`,
            `"pointwise_kernel"`). May be omitted for layers with one kernel.

    Returns:
        A tuple of non-negative ints.

    Raises:
        UnsupportedLayerError: if the layer kind has no defined output channels.
        ValueError: if `kernel` is not one of the layer's kernels, or is
            omitted for a layer with two.

    Example:

    ```python
    layer = keras.layers.Conv2DTranspose(8, 3)
    layer.build((None, 16, 16, 4))
    output_channel_axes(layer)  # (0, 1, 3): the filters are axis 2
    ```
    """
    slots = layer_kernels(layer)
    if not slots:
        raise UnsupportedLayerError(
            f"Layer '{layer.name}' of type {type(layer).__name__} has no kernel "
            "with known output channels. Supported: Dense, EinsumDense, "
            "Conv1D/2D/3D, Conv1D/2D/3DTranspose, DepthwiseConv1D/2D, "
            "SeparableConv1D/2D."
        )
    if kernel is None:
        if len(slots) > 1:
            raise ValueError(
                "Invalid value for argument `kernel`: layer "
                f"'{layer.name}' has kernels {[s.name for s in slots]}; name "
                "one. Received: kernel=None"
            )
        return slots[0].axes
    for slot in slots:
        if kernel is slot.variable or (isinstance(kernel, str) and kernel == slot.name):
            return slot.axes
    raise ValueError(
        f"Invalid value for argument `kernel`: expected one of layer "
        f"'{layer.name}''s kernels {[s.name for s in slots]}. "
        f"Received: kernel={getattr(kernel, 'path', kernel)}"
    )


def normalize_axis(axis):
    """Validates a user's `axis` argument; returns `None` or a tuple of ints.

    Raises:
        ValueError: if `axis` is not `None`, an int or a sequence of distinct
            ints.
    """
    if axis is None:
        return None
    values = (axis,) if isinstance(axis, numbers.Integral) else axis
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (
        values is None
        or not values
        or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in values)
        or len(set(values)) != len(values)
    ):
        raise ValueError(
            "Invalid value for argument `axis`: expected None, an int or a "
            f"non-empty tuple of distinct ints. Received: axis={axis!r}"
        )
    return tuple(int(a) for a in values)


def reduction_axes(shape, axis=None):
    """Resolves `axis` against a kernel shape.

    Args:
        shape: the kernel's shape.
        axis: `None` (every axis but the last) or an int or tuple of ints,
            negative values counting from the end.

    Returns:
        A sorted tuple of non-negative axes.

    Raises:
        ValueError: if an axis is out of range for `shape`, or `axis` is
            `None` and the kernel has rank < 2 (a bias vector has no
            channels to normalise).
    """
    ndim = len(shape)
    if axis is None:
        if ndim < 2:
            raise ValueError(
                "Invalid value for argument `axis`: the default (every axis "
                "but the last, which holds the output channels) needs a "
                f"kernel of rank >= 2, but the kernel has shape {tuple(shape)}. "
                "Pass `axis` explicitly, or do not apply this to biases. "
                "Received: axis=None"
            )
        return tuple(range(ndim - 1))
    axes = normalize_axis(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"Invalid value for argument `axis`: axis {a} is out of range "
                f"for a kernel of rank {ndim} (shape {tuple(shape)}). "
                f"Received: axis={axis!r}"
            )
    resolved = tuple(sorted(a % ndim for a in axes))
    if len(set(resolved)) != len(resolved):
        raise ValueError(
            "Invalid value for argument `axis`: it names the same axis twice "
            f"for a kernel of rank {ndim}. Received: axis={axis!r}"
        )
    return resolved


def compute_dtype(dtype):
    """The dtype norms are computed in: float32 for 16-bit floats, else as is."""
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def channel_norms(kernel, axis=None, keepdims=False):
    """Returns the L2 norm of the weight vector of every output channel.

    16-bit kernels are cast to float32 first; the norm of an all-zero channel
    is 1e-15 (not 0) so that its gradient is exactly zero rather than NaN.

    Args:
        kernel: a kernel tensor or variable.
        axis: the axes that make up one channel's weight vector; `None` means
            every axis but the last (Dense, ConvND and pointwise kernels). Use
            `output_channel_axes(layer)` for other layers.
        keepdims: keep the reduced axes with size 1.

    Returns:
        A tensor of the kernel's non-reduced shape (`(filters,)` for a Conv2D
        kernel), in float32 or float64.

    Raises:
        ValueError: for an invalid or out-of-range `axis`.

    Example:

    ```python
    kernel = np.ones((3, 3, 4, 8), "float32")
    channel_norms(kernel)  # eight norms of sqrt(3 * 3 * 4) = 6
    ```
    """
    kernel = ops.convert_to_tensor(kernel)
    axes = reduction_axes(kernel.shape, axis)
    kernel = ops.cast(kernel, compute_dtype(kernel.dtype))
    return ops.sqrt(ops.sum(ops.square(kernel), axis=axes, keepdims=keepdims) + _NORM_EPSILON)


def oblique_distance(kernel, axis=None):
    """How far a kernel is from the oblique manifold: mean |‖w_c‖ − 1|.

    Zero when every output channel has unit norm.

    Args:
        kernel: a kernel tensor or variable.
        axis: as in `channel_norms`.

    Returns:
        A scalar tensor (float32 for float32 and 16-bit kernels).

    Example:

    ```python
    oblique_distance(np.eye(4, dtype="float32"))  # unit columns: 0.0
    ```
    """
    return ops.mean(ops.abs(channel_norms(kernel, axis) - 1.0))
