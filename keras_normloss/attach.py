"""Adding a regularizer or constraint to a model that already exists."""

import dataclasses
import warnings

import keras

from keras_normloss import norms

_ON_UNSUPPORTED = ("warn", "raise", "ignore")
PARAMETERS = ("kernels", "all")


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


def attach(
    model,
    regularizer=None,
    *,
    constraint=None,
    layer_types=None,
    where=None,
    replace=False,
    on_unsupported="warn",
    parameters="kernels",
    factor=None,
):
    """Adds a regularizer and/or constraint to every kernel of a built model.

    `regularizer` may also be the name of any method of
    `keras_normloss.methods` (`"normloss"`, `"wn"`, `"oni"`, `"olm-l1"`,
    `"pbwn"`, ...; the names `train --method` takes), with its `factor`: the
    method is applied with its default layers (or `where`) and a
    `keras_normloss.methods.MethodReport` is returned. Its `model` is the
    model to train: `model` itself for penalties and constraints, a new model
    (weights copied) for reparametrizations, which cannot change the layers
    of an existing functional model in place.

    Walks every layer, nested models and the sublayers of composite layers
    (e.g. the EinsumDense projections of MultiHeadAttention) included, and
    gives each kernel a copy of `regularizer` / `constraint` with that
    kernel's output-channel axes (see `keras_normloss.norms`): `(0, 1, 2)` for
    a Conv2D kernel, `(0, 1)` for a DepthwiseConv2D kernel, and so on.
    Objects without an `axis` argument (e.g. `weight_decay(...)`) are shared.
    Biases, BatchNormalization and other rank-1 weights are left alone unless
    `parameters="all"`.

    Afterwards `model.losses` holds one penalty per regularized kernel, `fit`
    uses them (cached train/test functions are reset so they are retraced),
    and the change is in each layer's config, so it survives `.keras`
    save/load. Layers whose `trainable` is False are attached to too; their
    penalty counts once they are unfrozen.

    Layers that own a weight matrix but have no defined output channels (RNN
    cells, Embedding, custom layers, quantized or LoRA-enabled layers) are
    reported in `report.unsupported` and, by default, named in one
    `UserWarning`; `on_unsupported="raise"` raises instead.

    Args:
        model: a built `keras.Model` or layer, e.g. a pretrained
            `keras.applications` model.
        regularizer: a regularizer instance (e.g. `NormLoss(1e-4)`,
            `weight_decay(1e-4)`) or identifier, or `None`.
        constraint: a constraint instance (e.g. `WeightRescaling()`) or
            identifier, or `None`.
        layer_types: a class or tuple of layer classes to act on (e.g.
            `keras.layers.Conv2D`); `None` means every supported kind.
        where: optional predicate `layer -> bool`; layers for which it
            returns False are left alone (e.g. to spare the classifier).
        replace: whether to replace a regularizer/constraint a kernel already
            has. If False, such kernels are left as they are and listed in
            `report.skipped`.
        on_unsupported: `"warn"` (default), `"raise"` or `"ignore"`.
        factor: with a method name: the method's factor (λ, wd).
        parameters: `"kernels"` (default) or `"all"`: also every other
            trainable weight of the layers acted on (biases,
            BatchNormalization's gamma and beta), as PyTorch's
            `SGD(model.parameters(), weight_decay=wd)` decays them and the
            papers' reference code does. Only for a regularizer without
            output-channel axes (e.g. `weight_decay`): Norm Loss and
            constraints act on channels, which a bias does not have.

    Returns:
        An `AttachReport`; `print(report)` lists every kernel. For a method
        name, a `keras_normloss.methods.MethodReport`.

    Raises:
        ValueError: if neither `regularizer` nor `constraint` is given, a
            constraint is passed as the regularizer, `on_unsupported` is not
            one of the choices, `layer_types` holds something other than layer
            classes, or `on_unsupported="raise"` and a layer is unsupported.

    Example:

    ```python
    model = keras.applications.ResNet50(weights=None)
    report = attach(model, NormLoss(1e-4))
    print(report)  # 53 Conv2D kernels and the Dense classifier
    ```
    """
    if isinstance(regularizer, str):
        from keras_normloss import methods  # methods applies penalties through attach

        if regularizer in methods.METHODS:
            report = methods.apply(
                model, regularizer, factor, layers=where, weight_decay_on=parameters
            )
            if report.model is not model:
                warnings.warn(
                    f"attach(model, {regularizer!r}) built a new model with wrapped layers; "
                    "train `report.model`: the layers of `model` are unchanged.",
                    UserWarning,
                    stacklevel=2,
                )
            return report
    if factor is not None:
        raise ValueError(
            "Invalid value for argument `factor`: it goes with a method name "
            f"(one of keras_normloss.methods.names()). Received: factor={factor!r}"
        )
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

    if report.unsupported and on_unsupported != "ignore":
        message = "attach() cannot handle these layers and left them alone:\n" + "\n".join(
            f"  {a.path} ({a.layer_type}): {a.reason}" for a in report.unsupported
        )
        if on_unsupported == "raise":
            raise ValueError(message)  # before anything is changed
        warnings.warn(message, UserWarning, stacklevel=2)
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
            stacklevel=2,
        )
    # A model that has trained already holds traced train/test functions
    # whose loss was built without the new penalties.
    for name in ("train_function", "test_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    return report
