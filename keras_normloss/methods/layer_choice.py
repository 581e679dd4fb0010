"""Which layers of a model a method touches by default (every kernel, the convolutions, or the
stem), and what kind of layer each kernel belongs to (stem, convolution, shortcut, Dense)."""

import keras

# Names of projection shortcuts: ours ("..._shortcut_conv"), keras.applications' ResNets
# ("conv2_block1_0_conv") and torchvision-style ports ("downsample").
_SHORTCUT_MARKS = ("shortcut", "_0_conv", "downsample")


def _is_conv(layer):
    return isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D)


def _is_shortcut(layer):
    return any(mark in layer.name for mark in _SHORTCUT_MARKS)


def _stem(model):
    """The first convolution of the model, in layer order (nested models entered).

    Depth-first through `layers` (a Functional model's are in topological
    order): `_flatten_layers` would not do, since it reverses the sublayers of
    a nested model (`deque.extendleft`) and so named the backbone's last
    convolution in `Sequential([backbone, head])`.
    """
    for layer in getattr(model, "layers", ()):
        # A reparametrization wrapper (WN, ONI, OLM) holds its convolution as `layer`.
        inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
        if _is_conv(inner):
            return inner
        found = _stem(layer)
        if found is not None:
            return found
    return None


def layer_selector(name, model):
    """The predicate `layer -> bool` of a default layer choice, for one model.

    Args:
        name: `"kernels"` (every conv and Dense kernel), `"convs"` (every
            convolution but projection shortcuts; the classifier and other
            Dense layers stay plain: PBWN, ONI, OLM and WN in the peers' ResNet
            code) or `"stem"` (the model's first convolution: OLM-L1).
        model: the model the predicate will be asked about.

    Returns:
        A callable `layer -> bool`.

    Raises:
        ValueError: for an unknown name, or `"stem"` on a model without a
            convolution.

    Example:

    ```python
    where = layer_selector("convs", model)
    [layer.name for layer in model.layers if where(layer)]
    ```
    """
    if name == "kernels":
        return lambda layer: True
    if name == "convs":
        return lambda layer: _is_conv(layer) and not _is_shortcut(layer)
    if name == "stem":
        stem = _stem(model)
        if stem is None:
            raise ValueError(f"Model '{model.name}' has no convolution to call its stem.")
        return lambda layer: layer is stem
    raise ValueError(
        f"Invalid value for argument `layers`: expected one of {LAYER_CHOICES}. "
        f"Received: layers={name!r}"
    )


LAYER_CHOICES = ("kernels", "convs", "stem")


LAYER_KINDS = ("stem", "conv", "shortcut", "dense")


def layer_kind_of(model):
    """The function `layer -> kind` that sorts a model's kernel layers into `LAYER_KINDS`.

    `stem`: the model's first convolution; `shortcut`: a projection shortcut (by name, as
    `layer_selector("convs")` leaves them out); `dense`: Dense and EinsumDense layers (the
    classifier); `conv`: every other kernel (convolutions of any rank, depthwise, separable,
    transposed). The norm-dynamics callback reports each kind apart.

    Example:

    ```python
    kind = layer_kind_of(model)
    {layer.name: kind(layer) for layer in model.layers if hasattr(layer, "kernel")}
    ```
    """
    stem = _stem(model)

    def kind(layer):
        if layer is stem:
            return "stem"
        if isinstance(layer, keras.layers.Dense | keras.layers.EinsumDense):
            return "dense"
        if _is_shortcut(layer):
            return "shortcut"
        return "conv"

    return kind
