"""Kernel reparametrizations' base: a wrapper computing its layer's kernel from raw variables.

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
`keras_normloss.layers.reparametrize.reparametrize` applies a wrapper to the layers
of an existing model.
"""

import dataclasses
import math
import numbers

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


def check_positive_int(value, name, allow_none=False, minimum=1):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(
            f"Invalid value for argument `{name}`: expected {expected}. Received: {name}={value!r}"
        )
    return int(value)


def check_float(value, name, positive, allow_none=False):
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


class KernelReparametrization(keras.layers.Wrapper):
    """Base class: a wrapper whose layer's kernel is a function of raw variables.

    The inner layer keeps its own `kernel` variable `v` (and bias). The
    wrapper adds a per-output-channel `scale` and, on every call, computes

        W = scale_c * normalize(Z)_c       Z: v as rows (out, d)

    and runs the inner layer with `W` in place of `v` inside a
    `keras.StatelessScope`. `call` never overwrites `v`: the optimizer
    updates `v` and `scale` with gradients taken through `normalize`, and
    inference uses the same `W` as training. (Only `ONI`'s `build` sets `v`,
    once, to the Torch reference's orthogonalized start, unless
    `init="keep"`.) Subclasses define `normalize`.

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
        return check_float(scale_init, "scale_init", positive=True)

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
