"""Weight normalization (WN, Salimans & Kingma 2016) and its data-dependent initialization."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_normloss import norms
from keras_normloss.layers.reparametrization import KernelReparametrization, check_float


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
        return check_float(scale_init, "scale_init", positive=True, allow_none=True)

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
    init_scale = check_float(init_scale, "init_scale", positive=True)
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
