"""`attach`: add a regularizer, constraint or any method of the table to a model that already exists."""

import warnings

import keras

from keras_normloss.methods import application, placement, table
from keras_normloss.methods.placement import PARAMETERS, Attachment, AttachReport  # noqa: F401


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
    `"pbwn-epoch"`, ...; the names `train --method` takes), with its
    `factor`: the method is applied with its default layers (or `where`)
    and a `keras_normloss.methods.MethodReport` is returned. Penalties and
    constraints change `model` in place; the other kinds cannot, and the
    report's `needs` says what `fit` must get instead:
    `report.model` (reparametrizations: a new model, weights copied),
    `report.callbacks` (`pbwn-epoch`) or `report.optimizer(base)` (the
    decoupled methods). Each is also named in a `UserWarning`, and a report
    discarded without it warns again: `attach(model, "pbwn-epoch")` followed
    by `model.fit(...)` would train with no regularization at all.

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
        TypeError: if `model` is not a Keras model or layer (e.g. the method's name given
            first: `attach("oni", model)`).
        ValueError: for a string that is neither a method name nor a Keras
            regularizer identifier (the method names are listed), if neither
            `regularizer` nor `constraint` is given, a
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
    if not isinstance(model, keras.layers.Layer):  # keras.Model is a Layer
        raise TypeError(
            "Invalid value for argument `model`: expected a built Keras model or layer. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if isinstance(regularizer, str):
        if regularizer in table.METHODS:
            if layer_types is not None or replace or constraint is not None:
                raise ValueError(
                    f"Invalid arguments: with a method name ({regularizer!r}) only `factor`, "
                    "`where` and `parameters` apply; `layer_types`, `replace` and "
                    "`constraint` are for regularizer and constraint objects."
                )
            report = application.apply(
                model, regularizer, factor, layers=where, weight_decay_on=parameters
            )
            for need in report.needs:
                warnings.warn(
                    f"attach(model, {regularizer!r}) cannot change `model` in place: "
                    f"{application._NEEDS_HELP[need]}.",
                    UserWarning,
                    stacklevel=2,
                )
            return report
        try:
            keras.regularizers.get(regularizer)
        except ValueError:
            raise ValueError(
                f"Invalid value for argument `regularizer`: {regularizer!r} is neither a "
                f"method of keras_normloss ({', '.join(table.names())}) nor a Keras "
                f"regularizer identifier ('l1', 'l2', 'l1_l2', 'orthogonal_regularizer'). "
                f"Received: regularizer={regularizer!r}"
            ) from None
    if factor is not None:
        raise ValueError(
            "Invalid value for argument `factor`: it goes with a method name "
            f"(one of keras_normloss.methods.names()). Received: factor={factor!r}"
        )
    return placement.place(
        model,
        regularizer,
        constraint=constraint,
        layer_types=layer_types,
        where=where,
        replace=replace,
        on_unsupported=on_unsupported,
        parameters=parameters,
    )
