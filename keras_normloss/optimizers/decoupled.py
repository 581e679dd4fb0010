"""Decoupled Norm Loss and decoupled weight decay for any Keras optimizer.

Coupled Norm Loss (`keras_normloss.NormLoss`) is a loss term: its gradient
`2λ w (1 − 1/‖w_c‖)` joins the loss gradient and passes through momentum and
Adam's preconditioner. Decoupled Norm Loss applies the same gradient directly
to the weights, scaled by the current learning rate, before the optimizer's
own step, as PyTorch's AdamW and optax apply weight decay (`w ← w·(1 − lr·wd)`;
Loshchilov & Hutter's AdamW multiplies wd by the schedule multiplier η_t
instead of lr) and as the Ranger21 optimizer applies Norm Loss:

    w_c ← w_c · (1 − lr_t · 2λ · (1 − 1/‖w_c‖))      for every output channel c

`extend_with_normloss(optimizer_class)` adds it to any Keras optimizer class;
`NormLossSGD`, `NormLossAdam` and `NormLossAdamW` are ready-made. They apply
in `fit`, custom loops, on TensorFlow (tf.distribute included), JAX and
PyTorch, under `LossScaleOptimizer` and with `gradient_accumulation_steps`,
because they hook into the one place where Keras itself applies its decoupled
`weight_decay` (the private hook, isolated and checked in `keras_optimizer_hook`).
"""

import re
import warnings

import keras
from keras import ops

from keras_normloss import norms
from keras_normloss.optimizers.keras_optimizer_hook import assign_per_device, check_private_api
from keras_normloss.regularizers import penalties


def channel_axes_by_path(model):
    """Maps each weight of a model to its output-channel reduction axes.

    An optimizer sees variables, not layers, so it cannot tell a Conv2D kernel
    `(kh, kw, in, out)` from a Conv2DTranspose kernel `(kh, kw, out, in)` or a
    DepthwiseConv2D kernel `(kh, kw, in, multiplier)`. This asks
    `keras_normloss.norms` (the layer table) once, while the layers are known,
    and returns a plain, serializable mapping for the `normloss_axes`
    argument of `NormLossSGD` and friends.

    Args:
        model: a built `keras.Model` or layer. Nested models and the sublayers
            of composite layers are included.

    Returns:
        A dict `{variable.path: axes}`: a tuple of ints for every kernel in
        the table (`(0, 1, 2)` for Conv2D, `(0, 1)` for DepthwiseConv2D,
        `(0, 1, 3)` for Conv2DTranspose, ...), and `None` (no Norm Loss) for
        every other weight of rank >= 2 (Embedding, recurrent kernels, custom,
        quantized or LoRA layers), whose output channels are not known.
        Rank-0/1 weights (biases, BatchNormalization) are left out; the
        optimizers skip them by default.

    Raises:
        ValueError: if the model has no weights (it is not built), or two
            different weights share a path.

    Example:

    ```python
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3)])
    channel_axes_by_path(model)  # {'sequential/depthwise_conv2d/kernel': (0, 1)}
    ```
    """
    weights = list(getattr(model, "weights", []))
    if not weights:
        raise ValueError(
            "Invalid value for argument `model`: expected a built Keras model "
            f"or layer with weights. Received: model={model!r} with no weights "
            "(call `model.build(input_shape)` or run it on data first)."
        )
    axes_by_path = {}
    owner = {}

    def put(variable, axes):
        path = variable.path
        if path in owner and owner[path] is not variable and axes_by_path[path] != axes:
            raise ValueError(
                f"Two different weights of the model share the path {path!r}, "
                "so a path cannot tell them apart. Give their layers distinct "
                "names."
            )
        owner[path] = variable
        axes_by_path[path] = axes

    kernel_ids = set()
    for slot in norms.model_kernels(model):
        if slot.variable is not None:
            put(slot.variable, tuple(slot.axes))
            kernel_ids.add(id(slot.variable))
    for variable in weights:
        if len(variable.shape) >= 2 and id(variable) not in kernel_ids:
            put(variable, None)
    return axes_by_path


def _validated_axes_map(normloss_axes):
    """`normloss_axes` as given to the optimizers -> None or {path: axes|None}."""
    if normloss_axes is None:
        return None
    if isinstance(normloss_axes, (keras.Model, keras.layers.Layer)):
        return channel_axes_by_path(normloss_axes)
    if not isinstance(normloss_axes, dict) or not all(isinstance(k, str) for k in normloss_axes):
        raise ValueError(
            "Invalid value for argument `normloss_axes`: expected None, a built "
            "Keras model, or a dict {variable.path: axes or None} (see "
            "`channel_axes_by_path`). Received: "
            f"normloss_axes={normloss_axes!r}"
        )
    return {
        path: None if axes is None else norms.normalize_axis(axes)
        for path, axes in normloss_axes.items()
    }


def _variable_path(variable):
    return getattr(variable, "path", None) or variable.name


# ---------------------------------------------------------------------------
# The update itself.
# ---------------------------------------------------------------------------


def decoupled_normloss_update(kernel, factor, learning_rate, axis=None):
    """One decoupled Norm Loss step: `w · (1 − lr · 2λ · (1 − 1/‖w_c‖))`.

    The channel norms are those of `keras_normloss.channel_norms` (same axes,
    same epsilon), so decoupled and coupled Norm Loss share one norm. 16-bit
    kernels are updated in float32 and cast back.

    Near an all-zero channel the step stays bounded: it moves the channel by
    about `lr · 2λ` along its own direction (away from 0), and an exactly
    zero channel stays zero.

    Args:
        kernel: a kernel tensor.
        factor: λ, a non-negative float.
        learning_rate: the learning rate of this step (a scalar).
        axis: the axes of one output channel's weight vector, as in
            `channel_norms`; `None` means every axis but the last.

    Returns:
        The updated kernel, in the kernel's dtype.

    Example:

    ```python
    w = np.full((4, 2), 1.0, "float32")  # two channels of norm 2
    decoupled_normloss_update(w, 0.1, 0.5)  # 1 - 0.5 * 0.2 * 0.5 = 0.95: 0.95 everywhere
    ```
    """
    kernel = ops.convert_to_tensor(kernel)
    channel_norms = norms.channel_norms(kernel, axis, keepdims=True)
    dtype = channel_norms.dtype
    rate = ops.cast(learning_rate, dtype) * ops.cast(2.0 * factor, dtype)
    shrink = 1.0 - rate * (1.0 - 1.0 / channel_norms)
    return ops.cast(ops.cast(kernel, dtype) * shrink, kernel.dtype)


class _DecoupledNormLoss:
    """The mixin `extend_with_normloss` puts in front of a Keras optimizer."""

    def __init__(
        self,
        *args,
        normloss_factor=1e-3,
        normloss_axes=None,
        weight_decay_1d=False,
        weight_decay_paths=None,
        **kwargs,
    ):
        # Validate before super().__init__, which Keras requires to come
        # before any attribute is set.
        factor = penalties.validate_factor(normloss_factor, "normloss_factor")
        axes_map = _validated_axes_map(normloss_axes)
        if not isinstance(weight_decay_1d, bool):
            raise ValueError(
                "Invalid value for argument `weight_decay_1d`: expected True or "
                f"False. Received: weight_decay_1d={weight_decay_1d!r}"
            )
        if weight_decay_paths is not None and (
            isinstance(weight_decay_paths, str)
            or not all(isinstance(p, str) for p in weight_decay_paths)
        ):
            raise ValueError(
                "Invalid value for argument `weight_decay_paths`: expected None or a list "
                f"of variable paths. Received: weight_decay_paths={weight_decay_paths!r}"
            )
        weight_decay = kwargs.get("weight_decay")
        if weight_decay is not None:
            # Keras accepts any number here and would happily grow weights.
            penalties.validate_factor(weight_decay, "weight_decay")
        super().__init__(*args, **kwargs)
        self.normloss_factor = factor
        self.normloss_axes = axes_map
        self.weight_decay_1d = weight_decay_1d
        self.weight_decay_paths = None if weight_decay_paths is None else sorted(weight_decay_paths)
        self._weight_decay_path_set = (
            None if weight_decay_paths is None else frozenset(weight_decay_paths)
        )
        self._normloss_excluded_ids = set()
        self._normloss_excluded_pattern = None
        self._normloss_warned = set()

    def exclude_from_normloss(self, var_list=None, var_names=None):
        """Exclude variables from decoupled Norm Loss.

        Mirrors Keras's `exclude_from_weight_decay`, with two differences:
        `var_names` are regular expressions searched in `variable.path`
        (which ends with `variable.name`, so name patterns work too, and layer
        names can be given), and it raises once the optimizer is built rather
        than being ignored. Like Keras's, the exclusion is not part of the
        config; for one that is saved, give the variable's path `None` in
        `normloss_axes`. Each call replaces the previous exclusions.

        Args:
            var_list: variables to exclude.
            var_names: strings (regular expressions); a variable whose path
                contains a match is excluded, e.g. `["predictions"]`.

        Raises:
            ValueError: if the optimizer is already built.
        """
        if self.built:
            raise ValueError(
                "`exclude_from_normloss()` can only be configured before the "
                "optimizer is built (before the first training step)."
            )
        self._normloss_excluded_ids = {id(v) for v in var_list or ()}
        names = list(var_names or ())
        self._normloss_excluded_pattern = re.compile("|".join(names)) if names else None

    def _normloss_axes_of(self, variable):
        """The reduction axes for `variable`, or None if it gets no Norm Loss."""
        path = _variable_path(variable)
        if id(variable) in self._normloss_excluded_ids:
            return None
        if self._normloss_excluded_pattern is not None and (
            self._normloss_excluded_pattern.search(path)
        ):
            return None
        if self.normloss_axes is not None and path in self.normloss_axes:
            axes = self.normloss_axes[path]
            if axes is None:
                return None
        elif len(variable.shape) >= 2:
            axes = None  # every axis but the last
        else:
            return None  # biases, BatchNormalization: no output channels
        try:
            axes = norms.reduction_axes(variable.shape, axes)
        except ValueError as error:
            raise ValueError(f"normloss_axes for variable {path!r}: {error}") from None
        if isinstance(getattr(variable, "regularizer", None), penalties.NormLoss):
            if path not in self._normloss_warned:
                self._normloss_warned.add(path)
                warnings.warn(
                    f"Variable {path!r} has a NormLoss regularizer and the "
                    f"optimizer {type(self).__name__} applies decoupled Norm "
                    "Loss to it too: Norm Loss is applied twice. Remove one.",
                    stacklevel=2,
                )
        return axes

    def _apply_weight_decay(self, variables):
        # Norm Loss first, then Keras's weight decay: the weight-decay factor
        # is a scalar, so both factors are then evaluated at the same w_t (the
        # point where the gradient was taken), whatever the order of the
        # multiplications.
        if self.normloss_factor > 0:
            targets = []
            for variable in variables:
                axes = self._normloss_axes_of(variable)
                if axes is not None:
                    targets.append((variable, axes))
            if targets:
                assign_per_device(self, targets, self._normloss_update)
        if self.weight_decay is not None:
            if self._weight_decay_path_set is not None:
                chosen = self._weight_decay_path_set
                variables = [v for v in variables if _variable_path(v) in chosen]
            elif not self.weight_decay_1d:
                variables = [v for v in variables if len(v.shape) >= 2]
            super()._apply_weight_decay(variables)

    def _normloss_update(self, value, axes):
        # `self.learning_rate` is read here, where the update runs (per device
        # on tf.distribute), as Keras's own weight decay reads it.
        return decoupled_normloss_update(value, self.normloss_factor, self.learning_rate, axes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "normloss_factor": self.normloss_factor,
                "normloss_axes": None
                if self.normloss_axes is None
                else {
                    path: None if axes is None else list(axes)
                    for path, axes in self.normloss_axes.items()
                },
                "weight_decay_1d": self.weight_decay_1d,
                "weight_decay_paths": self.weight_decay_paths,
            }
        )
        return config


_CLASS_DOC = """{base} with decoupled Norm Loss and decoupled weight decay.

    Before each step of `keras.optimizers.{base}`, every selected kernel is
    updated per output channel `c` (λ = `normloss_factor`):

        w_c ← w_c · (1 − lr_t · 2λ · (1 − 1/‖w_c‖))

    where `lr_t` is the learning rate of this step (a schedule's current
    value). This is Norm Loss's gradient (Georgiou et al., ICPR 2020, eq. 6)
    applied outside the optimizer's momentum and moment estimates, as
    PyTorch's AdamW does for weight decay and Ranger21 does for Norm Loss. The channel
    norm is `keras_normloss.channel_norms` (same epsilon as `NormLoss`). It
    runs after gradient clipping, at the weights where the gradient was
    taken, only on real update steps (`gradient_accumulation_steps`), never on
    steps `LossScaleOptimizer` skips, and on TensorFlow (tf.distribute
    included), JAX and PyTorch.

    How λ relates to the coupled `keras_normloss.NormLoss(λ)` regularizer:
    - plain SGD (momentum 0): identical. `NormLossSGD(lr, normloss_factor=λ)`
      takes the same step as `SGD(lr)` on a model with `NormLoss(λ)`
      attached, up to float rounding.
    - SGD with momentum μ: the coupled penalty enters the velocity, so at
      steady state it acts about 1/(1 − μ) times as strongly (10× at
      μ = 0.9). To match a paper's coupled λ, try `normloss_factor ≈
      λ / (1 − μ)`: a heuristic, not an identity.
    - Adam: the coupled gradient is divided by √v̂, so its strength varies per
      weight and shrinks where loss gradients are large; the decoupled step
      does not, and there is no fixed conversion.
    A channel's norm relaxes toward 1 in about `1 / (2 · lr · λ)` steps (500
    at lr 0.1 and λ 1e-2), so a short run needs a larger λ.

    Which variables: by default every variable of rank >= 2, reduced over all
    axes but the last (right for Dense, Conv1D/2D/3D and pointwise kernels);
    rank-0/1 variables (biases, BatchNormalization γ/β) get none. An
    optimizer sees variables, not layers, so for DepthwiseConv and
    ConvTranspose kernels (and to spare Embedding or recurrent kernels) pass
    `normloss_axes=model` or `channel_axes_by_path(model)`. A variable that
    also carries a `NormLoss` regularizer triggers a warning (Norm Loss twice).

    Weight decay: Keras's own `weight_decay=wd` argument already is decoupled
    weight decay in the PyTorch-AdamW/optax sense, `w ← w · (1 − lr_t · wd)`
    before the step, outside momentum; it is reused unchanged, except that
    rank-0/1 variables are excluded by default (`weight_decay_1d=False`;
    `exclude_from_weight_decay` still works). Note that PyTorch's
    `SGD(weight_decay=wd)` is coupled: that is `keras_normloss.weight_decay(wd)`,
    equal to this only without momentum. Norm Loss is applied first, then the
    weight decay; both factors are evaluated at the same weights.

    Registered for serialization as "keras_normloss>{name}": `get_config`,
    `keras.optimizers.serialize` and a `.keras` model saved with this
    optimizer round-trip (`import keras_normloss` before loading).
    `exclude_from_normloss` exclusions are not saved (like Keras's
    `exclude_from_weight_decay`); a path mapped to `None` in `normloss_axes` is.

    Args:
        *args, **kwargs: the arguments of `keras.optimizers.{base}`
            (`learning_rate`, `weight_decay`, ...).
        normloss_factor: λ, a non-negative float; 0 disables Norm Loss.
        normloss_axes: `None` (the default rule above), a built Keras model
            (converted at once with `channel_axes_by_path`), or a dict
            `{{variable.path: axes or None}}`; `None` excludes that variable,
            and variables not in the dict follow the default rule.
        weight_decay_1d: whether `weight_decay` also acts on rank-0/1
            variables. Default False.
        weight_decay_paths: `None` (the rule of `weight_decay_1d`) or the
            paths of exactly the variables `weight_decay` acts on (what
            `keras_normloss.methods.apply` passes to honour a layer choice);
            saved with the config, unlike `exclude_from_weight_decay`.

    Raises:
        ValueError: if `normloss_factor` or `weight_decay` is negative, NaN,
            infinite or not a number; `normloss_axes` is not one of the
            accepted forms or holds invalid axes; `weight_decay_1d` is not a
            bool. When training: if a variable's axes are out of range.

    Example:

    ```python
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    optimizer = keras_normloss.optimizers.{name}(
        learning_rate=0.1, normloss_factor=1e-2, normloss_axes=model)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    ```
    """

_EXTENDED = {}


def extend_with_normloss(optimizer_class, name=None):
    """Returns a subclass of a Keras optimizer with decoupled Norm Loss.

    The subclass takes the base class's arguments plus `normloss_factor`,
    `normloss_axes` and `weight_decay_1d`, and has `exclude_from_normloss`;
    see `NormLossSGD` for what it computes. Classes are cached: the same base
    gives the same subclass, so `extend_with_normloss(keras.optimizers.SGD) is
    NormLossSGD`. The subclass is registered for serialization as
    "keras_normloss>{name}"; call this again before loading a model saved
    with it. For mixed precision, wrap an instance in
    `keras.optimizers.LossScaleOptimizer`; do not extend that class.

    Args:
        optimizer_class: a subclass of `keras.optimizers.Optimizer`, e.g.
            `keras.optimizers.RMSprop` or a custom optimizer.
        name: the new class's name; default `"NormLoss" + base name`.

    Returns:
        The new optimizer class.

    Raises:
        ValueError: if `optimizer_class` is not a Keras optimizer class, is
            `LossScaleOptimizer`, or `name` is already registered to another
            class.
        RuntimeError: if Keras no longer has the private hook this rests on.

    Example:

    ```python
    NormLossRMSprop = extend_with_normloss(keras.optimizers.RMSprop)
    optimizer = NormLossRMSprop(learning_rate=1e-3, normloss_factor=1e-3)
    ```
    """
    is_class = isinstance(optimizer_class, type)
    if not (is_class and issubclass(optimizer_class, keras.optimizers.Optimizer)):
        raise ValueError(
            "Invalid value for argument `optimizer_class`: expected a subclass "
            "of keras.optimizers.Optimizer (the class, not an instance). "
            f"Received: optimizer_class={optimizer_class!r}"
        )
    if issubclass(optimizer_class, _DecoupledNormLoss):
        return optimizer_class
    if issubclass(optimizer_class, keras.optimizers.LossScaleOptimizer):
        raise ValueError(
            "Invalid value for argument `optimizer_class`: LossScaleOptimizer "
            "wraps an optimizer and applies no weight update of its own. Wrap "
            "instead: keras.optimizers.LossScaleOptimizer(NormLossSGD(...)). "
            f"Received: optimizer_class={optimizer_class.__name__}"
        )
    if name is None:
        name = "NormLoss" + optimizer_class.__name__
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            "Invalid value for argument `name`: expected a Python identifier. "
            f"Received: name={name!r}"
        )
    cached = _EXTENDED.get((optimizer_class, name))
    if cached is not None:
        return cached
    check_private_api(optimizer_class)
    registered_name = f"keras_normloss>{name}"
    existing = keras.saving.get_registered_object(registered_name)
    if existing is not None and getattr(existing, "_normloss_base", None) is not optimizer_class:
        raise ValueError(
            f"Invalid value for argument `name`: {registered_name!r} is already "
            f"registered to {existing!r}. Pass another `name`. Received: name={name!r}"
        )
    cls = type(
        name,
        (_DecoupledNormLoss, optimizer_class),
        {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": _CLASS_DOC.format(base=optimizer_class.__name__, name=name),
            "_normloss_base": optimizer_class,
        },
    )
    keras.saving.register_keras_serializable(package="keras_normloss", name=name)(cls)
    _EXTENDED[(optimizer_class, name)] = cls
    return cls


NormLossSGD = extend_with_normloss(keras.optimizers.SGD)
NormLossAdam = extend_with_normloss(keras.optimizers.Adam)
NormLossAdamW = extend_with_normloss(keras.optimizers.AdamW)
