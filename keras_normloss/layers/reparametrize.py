"""Wrapping the chosen layers of a built model in a kernel reparametrization (WN, ONI, OLM).

The wrappers themselves are in `weight_norm.py`, `oni.py` and `own.py`; this module copies a model layer by
layer (`keras.models.clone_model`) and wraps the layers a predicate chooses, reporting which.
"""

import dataclasses

import keras

from keras_normloss.norms import UnsupportedLayerError


@dataclasses.dataclass(frozen=True)
class ReparamEntry:
    """One layer that `reparametrize` wrapped (or left, with `reason`)."""

    name: str
    layer_type: str
    reason: str = ""


@dataclasses.dataclass
class ReparamReport:
    """What `reparametrize` did.

    Attributes:
        wrapped: the layers now wrapped, named as in the original model.
        left: layers with a weight matrix that were not wrapped, with the
            reason (excluded by `where`, not supported by the wrapper, ...).
            Layers without a weight of rank >= 2 (BatchNormalization,
            pooling, activations) are copied without comment.
    """

    wrapped: list = dataclasses.field(default_factory=list)
    left: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [f"wrapped {len(self.wrapped)} layers, left {len(self.left)}"]
        lines += [f"  + {e.name} ({e.layer_type})" for e in self.wrapped]
        lines += [f"  - {e.name} ({e.layer_type}): {e.reason}" for e in self.left]
        return "\n".join(lines)


def _has_weight_matrix(layer):
    return any(len(w.shape) >= 2 for w in layer.weights)


def _copy_layer(layer):
    """A new layer with the same config and weights, built as the original."""
    new = layer.__class__.from_config(layer.get_config())
    if layer.weights:
        build_config = layer.get_build_config()
        if build_config is None:
            raise ValueError(f"layer '{layer.name}' has weights but no build config")
        new.build_from_config(build_config)
        new.set_weights(layer.get_weights())
    return new


def reparametrize(model, wrapper, *, where=None):
    """Returns a copy of a built model with a kernel reparametrization applied.

    Every layer is copied with its weights (the original model is left
    untouched and shares nothing with the copy); the layers that `wrapper`
    supports, and for which `where(layer)` is true, are wrapped. Since the
    copies keep the original kernels, a `WeightNorm` copy computes the same
    function as the original at wrap time; `ONI` and `OrthogonalWeightNorm`
    compute with orthogonalized kernels instead, and `ONI` (unless
    `init="keep"`) also starts its raw kernel from the orthogonalized copy.
    Nested functional and Sequential models are entered. The copy is not
    compiled.

    Layers the wrapper does not support (a DepthwiseConv2D for `ONI`, a
    1-input Dense, RNNs, ...) are copied unwrapped and listed in
    `report.left` with the reason, as are layers excluded by `where`.

    Args:
        model: a built Functional or Sequential `keras.Model` (e.g. from
            `keras.applications`).
        wrapper: a `KernelReparametrization` class or any callable
            `layer -> wrapper`, e.g. `functools.partial(ONI, iterations=2)`.
            It must raise `UnsupportedLayerError` for layers it cannot wrap.
        where: optional predicate `layer -> bool` on the original layers;
            layers for which it is False are not wrapped (e.g. to keep the
            classifier plain, or to wrap the stem only for "OLM-L1").

    Returns:
        `(new_model, report)`, where `report` is a `ReparamReport`.

    Raises:
        ValueError: if `model` is not a built Functional or Sequential model,
            or `wrapper` / `where` is not callable.

    Example:

    ```python
    base = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3))
    model, report = reparametrize(base, WeightNorm)
    print(report)  # 52 convolutions and the classifier wrapped
    ```
    """
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_run_through_graph"):
        raise ValueError(
            "Invalid value for argument `model`: expected a Functional or Sequential "
            f"keras.Model. Received: model={model!r}"
        )
    if not model.built:
        raise ValueError(
            "Invalid value for argument `model`: expected a built model. "
            f"Received: model={model.name!r} (not built)"
        )
    if not callable(wrapper):
        raise ValueError(
            "Invalid value for argument `wrapper`: expected a KernelReparametrization "
            f"class or a callable layer -> wrapper. Received: wrapper={wrapper!r}"
        )
    if where is not None and not callable(where):
        raise ValueError(
            f"Invalid value for argument `where`: expected a callable layer -> bool "
            f"or None. Received: where={where!r}"
        )
    report = ReparamReport()

    def clone(layer):
        layer_type = type(layer).__name__
        try:
            copy = _copy_layer(layer)
        except Exception as error:  # custom layers without get_config, ...
            report.left.append(
                ReparamEntry(
                    layer.name,
                    layer_type,
                    f"could not be copied ({error}); shared with the original model",
                )
            )
            return layer
        if not _has_weight_matrix(layer):
            return copy
        if where is not None and not where(layer):
            report.left.append(ReparamEntry(layer.name, layer_type, "excluded by `where`"))
            return copy
        if isinstance(layer, keras.Model):
            report.left.append(
                ReparamEntry(
                    layer.name,
                    layer_type,
                    "a model that keras.models.clone_model cannot enter; copied as is",
                )
            )
            return copy
        try:
            wrapped = wrapper(copy)
        except UnsupportedLayerError as error:
            report.left.append(ReparamEntry(layer.name, layer_type, str(error)))
            return copy
        report.wrapped.append(ReparamEntry(layer.name, layer_type))
        return wrapped

    new_model = keras.models.clone_model(model, clone_function=clone, recursive=True)
    return new_model, report
