"""Placing a regularizer or constraint on the chosen kernels of a built model, with their axes."""

import dataclasses
import warnings

import keras

from keras_normloss import norms
from keras_normloss.methods.table import PARAMETERS  # noqa: F401 (placement.PARAMETERS)

_ON_UNSUPPORTED = ("warn", "raise", "ignore")


@dataclasses.dataclass(frozen=True)
class Attachment:
    """One kernel that `attach` acted on (or skipped, with `reason`)."""

    path: str
    layer_type: str
    axes: tuple
    attached: object = None
    reason: str = ""


@dataclasses.dataclass
class AttachReport:
    """What `attach` did.

    Attributes:
        attached: the kernels now regularized/constrained, with their axes.
        skipped: kernels left alone because they already had a regularizer
            or constraint and `replace=False`.
        unsupported: layers with weight matrices whose output channels
            keras-normloss cannot tell (RNN cells, Embedding, custom layers,
            quantized or LoRA layers), with the reason.
    """

    attached: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    unsupported: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [
            f"attached to {len(self.attached)} kernels, skipped "
            f"{len(self.skipped)}, {len(self.unsupported)} unsupported layers"
        ]
        for a in self.attached:
            lines.append(f"  + {a.path} ({a.layer_type}, axes={a.axes}): {a.attached!r}")
        for a in self.skipped + self.unsupported:
            lines.append(f"  - {a.path} ({a.layer_type}): {a.reason}")
        return "\n".join(lines)


def _config_of(obj):
    get_config = getattr(obj, "get_config", None)
    config = get_config() if callable(get_config) else None
    return config if isinstance(config, dict) else {}


def _for_axes(template, axes):
    """A copy of `template` acting on `axes`, if it has an `axis` argument.

    NormLoss, WeightRescaling and keras.constraints.UnitNorm all take `axis`
    as the reduction axes; anything without one (L2, plain functions) is
    shared as is.
    """
    config = _config_of(template)
    if "axis" in config:
        return type(template).from_config({**config, "axis": list(axes)})
    return template


def _own_weight_matrices(layer):
    sublayer_ids = {
        id(w) for sub in layer._flatten_layers(include_self=False) for w in sub.trainable_weights
    }
    return [w for w in layer.trainable_weights if id(w) not in sublayer_ids and len(w.shape) >= 2]


def _other_parameters(layer, slots):
    """The trainable weights a layer owns besides its kernels: biases,
    BatchNormalization's gamma and beta, ... With the layer attribute that
    holds each one's regularizer (`bias_regularizer`, `gamma_regularizer`),
    or None where the layer has none."""
    kernels = {id(slot.variable) for slot in slots}
    sublayer_ids = {
        id(w) for sub in layer._flatten_layers(include_self=False) for w in sub.trainable_weights
    }
    return [
        (w, f"{w.name}_regularizer" if hasattr(layer, f"{w.name}_regularizer") else None)
        for w in layer.trainable_weights
        if id(w) not in kernels and id(w) not in sublayer_ids
    ]


def _set(layer, slot, attr, value):
    # Keras 3 reads a layer's regularizer only when it creates the variable;
    # afterwards `Layer.losses` asks `variable.regularizer`. Setting the layer
    # attribute alone does nothing now; setting it too keeps the change in
    # `get_config`, so a saved `.keras` model reloads with it.
    setattr(layer, getattr(slot, f"{attr}_attr"), value)
    if slot.variable is not None:
        setattr(slot.variable, attr, value)


def chosen_weights(model, where=None, parameters="kernels"):
    """The weights `place` would act on: `(variable, axes)` pairs, walked as `place` walks.

    Args:
        model: a built `keras.Model` or layer.
        where: optional predicate `layer -> bool`.
        parameters: `"kernels"` (the kernels of the table of axes, with their
            output-channel axes) or `"all"` (also every other trainable weight
            of the chosen layers, with axes None).

    Returns:
        A list of `(variable, axes or None)`, in layer order.
    """
    chosen = []
    for layer in model._flatten_layers(include_self=True):
        if where is not None and not where(layer):
            continue
        try:
            slots = norms.layer_kernels(layer)
        except norms.UnsupportedLayerError:
            continue
        chosen += [(s.variable, tuple(s.axes)) for s in slots if s.variable is not None]
        if parameters == "all":
            chosen += [(variable, None) for variable, _ in _other_parameters(layer, slots)]
    return chosen


def place(
    model,
    regularizer=None,
    *,
    constraint=None,
    layer_types=None,
    where=None,
    replace=False,
    on_unsupported="warn",
    parameters="kernels",
):
    """Gives every chosen kernel of a built model a copy of a regularizer and/or constraint.

    The machinery behind `keras_normloss.attach` and the table's penalties and
    projections: it walks every layer (nested models and the sublayers of
    composite layers included), gives each kernel its own copy with that
    kernel's output-channel axes, and reports what it did. See
    `keras_normloss.attach` for the arguments, what is returned and raised.
    """
    objects, layer_types = _checked(
        regularizer, constraint, layer_types, on_unsupported, parameters
    )
    report, plan, extras = _plan(model, objects, layer_types, where, replace, parameters)
    _carry_out(model, report, plan, extras, objects, on_unsupported)
    return report


def _checked(regularizer, constraint, layer_types, on_unsupported, parameters):
    """`place`'s arguments checked: the Keras objects to give (`{"regularizer": ...,
    "constraint": ...}`, the ones given) and `layer_types` as a tuple (or None)."""
    if regularizer is None and constraint is None:
        raise ValueError(
            "Invalid arguments: expected a `regularizer`, a `constraint` or "
            "both. Received: regularizer=None, constraint=None"
        )
    if isinstance(regularizer, keras.constraints.Constraint):
        raise ValueError(
            f"Invalid value for argument `regularizer`: {regularizer!r} is a "
            "constraint; pass it as `constraint=`. "
            f"Received: regularizer={regularizer!r}"
        )
    if parameters not in PARAMETERS:
        raise ValueError(
            f"Invalid value for argument `parameters`: expected one of {PARAMETERS}. "
            f"Received: parameters={parameters!r}"
        )
    if parameters == "all" and (
        constraint is not None or "axis" in _config_of(keras.regularizers.get(regularizer))
    ):
        raise ValueError(
            "Invalid value for argument `parameters`: 'all' is for a regularizer "
            "without output-channel axes (e.g. `weight_decay(wd)`); biases and "
            "BatchNormalization weights have no output channels. Received: "
            f"parameters='all', regularizer={regularizer!r}, constraint={constraint!r}"
        )
    if on_unsupported not in _ON_UNSUPPORTED:
        raise ValueError(
            "Invalid value for argument `on_unsupported`: expected one of "
            f"{_ON_UNSUPPORTED}. Received: on_unsupported={on_unsupported!r}"
        )
    if layer_types is not None:
        layer_types = layer_types if isinstance(layer_types, tuple) else (layer_types,)
        if not all(isinstance(t, type) and issubclass(t, keras.layers.Layer) for t in layer_types):
            raise ValueError(
                "Invalid value for argument `layer_types`: expected a layer "
                f"class or a tuple of them. Received: layer_types={layer_types!r}"
            )
    objects = {
        "regularizer": keras.regularizers.get(regularizer),
        "constraint": keras.constraints.get(constraint),
    }
    objects = {k: v for k, v in objects.items() if v is not None}

    return objects, layer_types


def _plan(model, objects, layer_types, where, replace, parameters):
    """What `place` will do, decided before anything changes: the report, the (layer, slot,
    objects) of each kernel and the (layer, variable, attribute) of each other parameter."""
    report = AttachReport()
    plan = []
    extras = []  # (layer, variable, attribute) of biases, BN weights, ... for parameters="all"
    for layer in model._flatten_layers(include_self=True):
        if layer_types is not None and not isinstance(layer, layer_types):
            continue
        if where is not None and not where(layer):
            continue
        layer_type = type(layer).__name__
        try:
            slots = norms.layer_kernels(layer)
        except norms.UnsupportedLayerError as error:
            report.unsupported.append(Attachment(layer.name, layer_type, (), reason=str(error)))
            continue
        if parameters == "all":
            for variable, attr in _other_parameters(layer, slots):
                if getattr(variable, "regularizer", None) is not None and not replace:
                    report.skipped.append(
                        Attachment(
                            variable.path,
                            layer_type,
                            (),
                            reason="already has a regularizer (replace=False)",
                        )
                    )
                    continue
                extras.append((layer, variable, attr))
                report.attached.append(
                    Attachment(variable.path, layer_type, (), attached=(objects["regularizer"],))
                )
        if not slots:
            # With parameters="all" such a layer's matrices were decayed above.
            if parameters != "all" and _own_weight_matrices(layer):
                report.unsupported.append(
                    Attachment(
                        layer.name,
                        layer_type,
                        (),
                        reason="owns a weight matrix with no known output channels",
                    )
                )
            continue
        for slot in slots:
            path = slot.variable.path if slot.variable is not None else f"{layer.name}/{slot.name}"
            taken = [
                kind
                for kind in objects
                if getattr(layer, getattr(slot, f"{kind}_attr"), None) is not None
            ]
            if taken and not replace:
                report.skipped.append(
                    Attachment(
                        path,
                        layer_type,
                        slot.axes,
                        reason=f"already has a {' and a '.join(taken)} (replace=False)",
                    )
                )
                continue
            made = {kind: _for_axes(obj, slot.axes) for kind, obj in objects.items()}
            plan.append((layer, slot, made))
            report.attached.append(
                Attachment(path, layer_type, slot.axes, attached=tuple(made.values()))
            )

    return report, plan, extras


def _carry_out(model, report, plan, extras, objects, on_unsupported):
    """Warns (or raises, before anything changes) about what `_plan` left out, then sets the
    objects it planned."""
    if report.unsupported and on_unsupported != "ignore":
        message = "attach() cannot handle these layers and left them alone:\n" + "\n".join(
            f"  {a.path} ({a.layer_type}): {a.reason}" for a in report.unsupported
        )
        if on_unsupported == "raise":
            raise ValueError(message)  # before anything is changed
        warnings.warn(message, UserWarning, stacklevel=4)
    for layer, slot, made in plan:
        for kind, obj in made.items():
            _set(layer, slot, kind, obj)
    for layer, variable, attr in extras:
        # As for kernels: the variable's own regularizer is what Keras reads;
        # the layer attribute keeps it in the config (not every layer has one).
        if attr is not None:
            setattr(layer, attr, objects["regularizer"])
        variable.regularizer = objects["regularizer"]
    if report.skipped:
        warnings.warn(
            f"attach() left {len(report.skipped)} kernels that already had a "
            "regularizer or constraint as they were (pass replace=True to "
            "replace them); see report.skipped.",
            UserWarning,
            stacklevel=4,
        )
    # A model that has trained already holds traced train/test functions
    # whose loss was built without the new penalties.
    for name in ("train_function", "test_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
