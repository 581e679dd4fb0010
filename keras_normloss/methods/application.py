"""Applying a method of the table to a built model: what it changes, and what it returns for `fit`."""

import copy as copy_module
import dataclasses
import functools
import warnings

import keras

from keras_normloss import norms
from keras_normloss.constraints.projections import EpochProjection, WeightRescaling
from keras_normloss.layers.oni import ONI, ONI_PRESETS
from keras_normloss.layers.own import OrthogonalWeightNorm
from keras_normloss.layers.reparametrize import reparametrize
from keras_normloss.layers.weight_norm import WeightNorm
from keras_normloss.methods import placement, table
from keras_normloss.methods.layer_choice import LAYER_CHOICES, layer_selector
from keras_normloss.optimizers import decoupled
from keras_normloss.regularizers.penalties import SRIP, NormLoss, SoftOrthogonality, weight_decay

# ONI's settings for networks with BatchNormalization. The reference's ImageNet ResNets (with BN):
# T=2, one group, scale 1.414. Its CIFAR ResNet-110 ran without BN (scale 0.8); for our CIFAR
# networks, which have BN, we keep its CIFAR T=5 and groups of 64 and the BN setting's 1.414.
# Each starts v as its reference does (`ONI`'s `init`): orthogonalized for CIFAR (the Torch
# module), the He-normal kernel as drawn for ImageNet (the PyTorch models).
ONI_SETTINGS = {
    "cifar": dict(
        iterations=5, group_size=64, scale_init=1.414, learnable_scale=True, init="orthogonal"
    ),
    "imagenet": dict(ONI_PRESETS["imagenet_resnet"]),
}


def _wrapper(method, image_size):
    if method.name == "wn":
        return WeightNorm
    if method.name == "oni":
        setting = ONI_SETTINGS["imagenet" if image_size and image_size >= 64 else "cifar"]
        return functools.partial(ONI, **setting)
    return OrthogonalWeightNorm  # olm, olm-l1: groups of 64 as the reference scripts


# The penalty of each penalty method, built from its factor.
PENALTIES = {
    "normloss": NormLoss,
    "weight-decay": weight_decay,
    "so": SoftOrthogonality,
    "srip": SRIP,
}

_NEEDS_HELP = {
    "model": "train `report.model`, a new model with wrapped layers (`model` is unchanged)",
    "callbacks": "pass `report.callbacks` to `fit` (the projection runs in a callback)",
    "optimizer": (
        "compile with `report.optimizer(keras.optimizers.SGD(...))` (or any Keras optimizer): "
        "the update runs inside the optimizer"
    ),
}


# What reading each attribute of a MethodReport hands over to the user.
_FULFILS = {
    "model": "model",
    "callbacks": "callbacks",
    "optimizer": "optimizer",
    "optimizer_options": "optimizer",
}


@dataclasses.dataclass(repr=False)
class MethodReport:
    """What `apply` did, and what the method needs beyond the model for `fit`.

    Penalties and constraints act on `model` in place; the other kinds need
    one more thing, named in `needs`, without which training runs with no
    regularization at all:

    - `"model"` (reparametrizations: wn, oni, olm, olm-l1): train
      `report.model`, a new model whose layers are wrapped;
    - `"callbacks"` (pbwn-epoch): pass `report.callbacks` to `fit`;
    - `"optimizer"` (the decoupled methods): compile with
      `report.optimizer(base_optimizer)`.

    A report whose needed part was never read (e.g. `apply(model,
    "pbwn-epoch")` with the result discarded, then `model.fit(...)`) warns when
    it is discarded: the method would otherwise be silently lost.

    Attributes:
        method: the `Method`.
        model: the model to train: the same object for penalties and
            constraints, a new one for reparametrizations.
        details: the `AttachReport` or `ReparamReport` (None for `none`,
            `pbwn-epoch` and optimizer-level methods).
        callbacks: Keras callbacks the method needs during `fit`
            (`pbwn-epoch`'s projection).
        optimizer_options: keyword arguments for a
            `keras_normloss.optimizers.decoupled` optimizer class
            (optimizer-level methods); `optimizer()` applies them.
    """

    method: object
    model: object
    details: object = None
    callbacks: list = dataclasses.field(default_factory=list)
    optimizer_options: dict = dataclasses.field(default_factory=dict)
    needs: tuple = ()

    def __getattribute__(self, name):
        if name in _FULFILS:
            object.__getattribute__(self, "_handed_over").add(_FULFILS[name])
        return object.__getattribute__(self, name)

    def __post_init__(self):
        object.__setattr__(self, "_handed_over", set())

    def __del__(self):
        try:
            needs = object.__getattribute__(self, "needs")
            lost = [n for n in needs if n not in object.__getattribute__(self, "_handed_over")]
            if lost:
                name = object.__getattribute__(self, "method").name
                warnings.warn(
                    f"The report of method {name!r} was discarded without its "
                    f"{' and '.join(lost)}: training the original model runs WITHOUT "
                    f"{name}. " + "; ".join(_NEEDS_HELP[n] for n in lost) + ".",
                    UserWarning,
                    stacklevel=2,
                )
        except Exception:  # interpreter shutdown: nothing left to warn with
            pass

    def _field_values(self):
        # Read without counting as handed over.
        return [object.__getattribute__(self, f.name) for f in dataclasses.fields(self)]

    def __copy__(self):
        return _made_on_purpose(*self._field_values())

    def __deepcopy__(self, memo):
        return _made_on_purpose(*(copy_module.deepcopy(v, memo) for v in self._field_values()))

    def __reduce__(self):
        return (_made_on_purpose, tuple(self._field_values()))

    def __repr__(self):
        get = lambda name: object.__getattribute__(self, name)  # noqa: E731
        return f"<MethodReport {get('method').name}: needs={get('needs')!r}>"

    def optimizer(self, base):
        """The optimizer to compile with: `base` with this method's decoupled update.

        Args:
            base: a Keras optimizer instance (e.g. `keras.optimizers.SGD(0.1,
                momentum=0.9)`); its configuration (learning rate or schedule,
                momentum, its own `weight_decay`, ...) is kept, except what the
                method sets (`weight-decay-decoupled` sets `weight_decay`). Note
                that `AdamW`'s default `weight_decay` is 0.004: pass
                `weight_decay=0.0` for decoupled Norm Loss alone. For a method
                without an optimizer-level update, `base` is returned unchanged.

        Returns:
            A new optimizer of `extend_with_normloss(type(base))`.

        Raises:
            ValueError: if `base` is not a Keras optimizer instance, or is a
                `LossScaleOptimizer` (wrap the result in one instead).

        Example:

        ```python
        report = apply(model, "normloss-decoupled", 1e-2)
        model.compile(report.optimizer(keras.optimizers.SGD(0.1, momentum=0.9)), "mse")
        ```
        """
        if not isinstance(base, keras.optimizers.Optimizer):
            raise ValueError(
                "Invalid value for argument `base`: expected a Keras optimizer instance, "
                f"e.g. keras.optimizers.SGD(0.1). Received: base={base!r}"
            )
        if not self.optimizer_options:
            return base
        cls = decoupled.extend_with_normloss(type(base))
        config = base.get_config()
        return cls.from_config({**config, **self.optimizer_options})

    def __str__(self):
        method, details = self.method, self.details
        head = f"{method.name} ({method.kind})"
        lines = [head if details is None else f"{head}: {details}"]
        lines += [f"  needs: {_NEEDS_HELP[need]}" for need in self.needs]
        return "\n".join(lines)


def _made_on_purpose(*fields):
    """A report made from another on purpose (a copy, a deep copy, an unpickled one): it never
    warns. The one place such a report is built."""
    report = MethodReport(*fields)
    object.__setattr__(report, "_handed_over", set(object.__getattribute__(report, "needs")))
    return report


def _check_factor(method, factor):
    if method.takes_factor and factor is None:
        raise ValueError(
            f"Invalid value for argument `factor`: method {method.name!r} needs its "
            f"factor ({method.factor}). Received: factor=None"
        )
    if not method.takes_factor and factor is not None:
        raise ValueError(
            f"Invalid value for argument `factor`: method {method.name!r} takes no factor. "
            f"Received: factor={factor!r}"
        )


def _decoupled_options(method, model, factor, where, weight_decay_on):
    """The optimizer arguments that restrict a decoupled update to the chosen weights.

    The same weights the coupled method would regularize: `placement.chosen_weights`
    walks the layers exactly as `attach` does.
    """
    decays_all = method.name == "weight-decay-decoupled" and weight_decay_on == "all"
    chosen = placement.chosen_weights(model, where, "all" if decays_all else "kernels")
    if method.name == "normloss-decoupled":
        axes = {path: None for path in decoupled.channel_axes_by_path(model)}
        axes.update({v.path: tuple(a) for v, a in chosen if a is not None})
        return {"normloss_factor": factor, "normloss_axes": axes}
    return {
        "weight_decay": factor,
        "normloss_factor": 0.0,
        "weight_decay_paths": sorted({v.path for v, _ in chosen}),
    }


_WRAPPER_NAMES = {
    "wn": "WeightNorm",
    "oni": "ONI",
    "olm": "OrthogonalWeightNorm",
    "olm-l1": "OrthogonalWeightNorm",
}


def _check_functional(model, method):
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_run_through_graph"):
        raise ValueError(
            f"Invalid value for argument `model`: method {method.name!r} rebuilds the model "
            "with wrapped layers, which needs a Functional or Sequential model; "
            f"{type(model).__name__} is subclassed. Wrap its layers where it creates them "
            f"instead, e.g. `keras_normloss.{_WRAPPER_NAMES[method.name]}"
            "(keras.layers.Conv2D(...))`. Received: "
            f"model={model.name!r} of type {type(model).__name__}"
        )


def apply(model, method, factor=None, *, layers=None, weight_decay_on="kernels"):
    """Applies a method of the table to a built model.

    Every kind honours the layer choice (`layers`) and, for the weight-decay
    methods, `weight_decay_on` in the same way: the decoupled methods update
    exactly the weights the coupled ones would penalise.

    Args:
        model: a built `keras.Model`; Functional or Sequential for the
            reparametrizations, which rebuild it.
        method: a name from `keras_normloss.methods.names()`.
        factor: the method's factor (see the table; λ for Norm Loss, wd for
            weight decay); required for methods that take one, refused for
            the others.
        layers: which layers, one of `LAYER_CHOICES`, a predicate
            `layer -> bool`, or None for the method's default.
        weight_decay_on: for `weight-decay` and `weight-decay-decoupled`:
            `"kernels"` or `"all"` (every trainable parameter of the chosen
            layers, as the references; see `attach`).

    Returns:
        A `MethodReport`. Its `needs` names what `fit` must get besides
        `model` (`report.model`, `report.callbacks`, `report.optimizer(...)`);
        empty for penalties and constraints, which act on `model` in place.

    Raises:
        ValueError: for an unknown method or layer choice, a missing or
            unexpected factor, a `weight_decay_on` other than "kernels" or
            "all", or a subclassed model given to a reparametrization.

    Example:

    ```python
    model = keras_normloss.models.get("resnet20")
    report = apply(model, "oni")
    model = report.model  # the convolutions wrapped in ONI, the classifier plain
    ```
    """
    method = table.get(method)
    _check_factor(method, factor)
    if weight_decay_on not in placement.PARAMETERS:
        raise ValueError(
            "Invalid value for argument `weight_decay_on`: expected one of "
            f"{placement.PARAMETERS}. Received: weight_decay_on={weight_decay_on!r}"
        )
    layers = method.layers if layers is None else layers
    where = layer_selector(layers, model) if isinstance(layers, str) else layers
    if where is not None and not callable(where):
        raise ValueError(
            f"Invalid value for argument `layers`: expected one of {LAYER_CHOICES}, "
            f"a callable layer -> bool, or None. Received: layers={layers!r}"
        )
    report = MethodReport(method, model)
    if method.kind == "none":
        return report
    if method.kind == "optimizer":
        report.optimizer_options = _decoupled_options(method, model, factor, where, weight_decay_on)
        report.needs = ("optimizer",)
        return report
    if method.kind == "penalty":
        parameters = weight_decay_on if method.name == "weight-decay" else "kernels"
        report.details = placement.place(
            model,
            PENALTIES[method.name](factor),
            where=where,
            parameters=parameters,
            on_unsupported="ignore",
        )
        return report
    if method.kind == "constraint":
        report.details = placement.place(
            model, constraint=WeightRescaling(), where=where, on_unsupported="ignore"
        )
        return report
    if method.kind == "epoch-projection":
        slots = [s for s in norms.model_kernels(model) if where(s.layer)]
        report.callbacks = [EpochProjection([s.variable for s in slots], [s.axes for s in slots])]
        report.needs = ("callbacks",)
        return report
    _check_functional(model, method)
    image_size = model.input_shape[1] if len(model.input_shape) == 4 else None
    report.model, report.details = reparametrize(model, _wrapper(method, image_size), where=where)
    report.needs = ("model",)
    return report
