"""THE table of methods: every way of controlling weight norms that keras-normloss ships.

A method is a name (the one `train --method` and `attach(model, NAME)` take), what it does to a
model (a penalty on kernels, a constraint, a reparametrization of kernels, or an optimizer-level
decoupled update), what its factor means and which layers it touches by default. `train`,
`sweep`, `attach` and the overhead benchmark all read this table; nothing else decides which
methods exist or which layers they touch. Default factors per training setting live in
`keras_normloss.presets`.

| name | kind | factor | layers by default | reference |
|---|---|---|---|---|
| none | - | - | - | |
| weight-decay | penalty `wd/2 Σw²` | wd | every parameter (or kernels) | the papers' baseline |
| normloss | penalty `λ Σ_c (1 − ‖w_c‖)²` | λ | conv and Dense kernels | Georgiou et al. 2020 |
| wrs | constraint: `w_c ← w_c/‖w_c‖` after each step | - | conv and Dense kernels | Liu et al. 2021 |
| pbwn | the same projection as wrs | - | convs, no shortcut, no classifier | Huang et al. 2017 |
| pbwn-epoch | that projection after each epoch | - | as pbwn | Huang et al. 2017 ("NP-Epoch") |
| wn | reparametrization `g_c v_c/‖v_c‖` | - | as pbwn | Salimans & Kingma 2016 |
| oni | reparametrization: Newton iteration | - | as pbwn | Huang et al. 2020 |
| olm | reparametrization: centred whitening | - | as pbwn | Huang et al. 2018 |
| olm-l1 | olm on the first conv only | - | the stem | Huang et al. 2018 |
| normloss-decoupled | optimizer: `w_c ← w_c(1 − lr·2λ(1 − 1/‖w_c‖))` | λ | rank ≥ 2 kernels | Ranger21's form |
| weight-decay-decoupled | optimizer: `w ← w(1 − lr·wd)` | wd | rank ≥ 2 kernels | Loshchilov & Hutter |
"""

import dataclasses
import functools

import keras

from keras_normloss import norms, reparam, reparam_model
from keras_normloss.constraints import EpochProjection, WeightRescaling
from keras_normloss.regularizers import NormLoss, weight_decay

KINDS = ("none", "penalty", "constraint", "epoch-projection", "reparametrization", "optimizer")

# Names of projection shortcuts: ours ("..._shortcut_conv"), keras.applications' ResNets
# ("conv2_block1_0_conv") and torchvision-style ports ("downsample").
_SHORTCUT_MARKS = ("shortcut", "_0_conv", "downsample")


def _is_conv(layer):
    return isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D)


def _is_shortcut(layer):
    return any(mark in layer.name for mark in _SHORTCUT_MARKS)


def _stem(model):
    """The first convolution of the model, in layer order (nested models entered)."""
    for layer in model._flatten_layers(include_self=False):
        if _is_conv(layer):
            return layer
    return None


def layer_selector(name, model):
    """The predicate `layer -> bool` of a default layer choice, for one model.

    Args:
        name: `"kernels"` (every conv and Dense kernel), `"convs"` (every
            convolution but projection shortcuts; the classifier and other
            Dense layers stay plain: PBWN, ONI, OLM and WN in the peers'
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


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of the table of methods.

    Attributes:
        name: the name `train --method` and `attach(model, name)` take.
        kind: one of `KINDS`.
        summary: what it does, in one line (the README's methods table).
        factor: what `--factor` means for it, or `None` if it takes none.
        layers: the layers it touches by default, one of `LAYER_CHOICES`.
        reference: where it comes from.
    """

    name: str
    kind: str
    summary: str
    factor: object
    layers: object
    reference: str

    @property
    def takes_factor(self):
        return self.factor is not None


_TABLE = (
    Method("none", "none", "no regularization", None, None, ""),
    Method(
        "weight-decay",
        "penalty",
        "coupled weight decay (wd/2)·Σw², gradient wd·w (PyTorch SGD convention)",
        "wd",
        "kernels",  # every parameter under train's default --weight-decay-on all
        "the papers' baseline",
    ),
    Method(
        "normloss",
        "penalty",
        "Norm Loss λ·Σ_c (1 − ‖w_c‖)², a soft pull to unit channel norms",
        "λ",
        "kernels",
        "Georgiou et al., ICPR 2020, arXiv 2103.06583",
    ),
    Method(
        "wrs",
        "constraint",
        "weight rescaling: w_c ← w_c/‖w_c‖ after every step",
        None,
        "kernels",
        "Liu et al., arXiv 2102.03497",
    ),
    Method(
        "pbwn",
        "constraint",
        "projection-based WN: w_c ← w_c/‖w_c‖ after every step (the wrs operation)",
        None,
        "convs",
        "Huang et al., arXiv 1710.02338 ('NP')",
    ),
    Method(
        "pbwn-epoch",
        "epoch-projection",
        "w_c ← w_c/‖w_c‖ after every epoch",
        None,
        "convs",
        "Huang et al., arXiv 1710.02338 ('NP-Epoch')",
    ),
    Method(
        "wn",
        "reparametrization",
        "weight normalization: w_c = g_c·v_c/‖v_c‖, trained in (v, g)",
        None,
        "convs",
        "Salimans & Kingma, NeurIPS 2016",
    ),
    Method(
        "oni",
        "reparametrization",
        "orthogonalization by Newton's iteration (T steps), then a learnable scale",
        None,
        "convs",
        "Huang et al., CVPR 2020, arXiv 2004.00917",
    ),
    Method(
        "olm",
        "reparametrization",
        "orthogonal linear module: centred whitening, orthonormal rows",
        None,
        "convs",
        "Huang et al., AAAI 2018, arXiv 1709.06079",
    ),
    Method(
        "olm-l1",
        "reparametrization",
        "olm on the first convolution only",
        None,
        "stem",
        "Huang et al., AAAI 2018 (models/CIFAR/wr_OLM_L1.lua)",
    ),
    Method(
        "normloss-decoupled",
        "optimizer",
        "Norm Loss's step outside the optimizer: w_c ← w_c·(1 − lr·2λ·(1 − 1/‖w_c‖))",
        "λ",
        "kernels",
        "Ranger21's decoupled Norm Loss",
    ),
    Method(
        "weight-decay-decoupled",
        "optimizer",
        "decoupled weight decay: w ← w·(1 − lr·wd) outside the optimizer (AdamW's)",
        "wd",
        "kernels",
        "Loshchilov & Hutter, ICLR 2019",
    ),
)
METHODS = {m.name: m for m in _TABLE}


def names():
    """The method names, in the table's order.

    Example:

    ```python
    names()  # ('none', 'weight-decay', 'normloss', 'wrs', 'pbwn', ...)
    ```
    """
    return tuple(METHODS)


def get(name):
    """Returns the `Method` called `name`.

    Args:
        name: one of `names()`.

    Returns:
        A `Method`.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Example:

    ```python
    get("oni").kind  # 'reparametrization'
    ```
    """
    if name not in METHODS:
        raise ValueError(
            f"Invalid value for argument `method`: expected one of {names()}. "
            f"Received: method={name!r}"
        )
    return METHODS[name]


# ONI's settings for networks with BatchNormalization. The reference's ImageNet ResNets (with BN):
# T=2, one group, scale 1.414. Its CIFAR ResNet-110 ran without BN (scale 0.8); for our CIFAR
# networks, which have BN, we keep its CIFAR T=5 and groups of 64 and the BN setting's 1.414.
ONI_SETTINGS = {
    "cifar": dict(iterations=5, group_size=64, scale_init=1.414, learnable_scale=True),
    "imagenet": dict(reparam.ONI_PRESETS["imagenet_resnet"]),
}


def _wrapper(method, image_size):
    if method.name == "wn":
        return reparam.WeightNorm
    if method.name == "oni":
        setting = ONI_SETTINGS["imagenet" if image_size and image_size >= 64 else "cifar"]
        return functools.partial(reparam.ONI, **setting)
    return reparam.OrthogonalWeightNorm  # olm, olm-l1: groups of 64 as the reference scripts


@dataclasses.dataclass
class MethodReport:
    """What `apply` did.

    Attributes:
        method: the `Method`.
        model: the model to train: the same object for penalties and
            constraints, a new one for reparametrizations.
        details: the `AttachReport` or `ReparamReport` (None for `none` and
            optimizer-level methods).
        callbacks: Keras callbacks the method needs during `fit`
            (`pbwn-epoch`'s projection); pass them to `fit`.
        optimizer_options: keyword arguments for a
            `keras_normloss.optimizers` class (optimizer-level methods).
    """

    method: object
    model: object
    details: object = None
    callbacks: list = dataclasses.field(default_factory=list)
    optimizer_options: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        head = f"{self.method.name} ({self.method.kind})"
        return head if self.details is None else f"{head}: {self.details}"


def apply(model, method, factor=None, *, layers=None, weight_decay_on="kernels"):
    """Applies a method of the table to a built model.

    Args:
        model: a built Functional or Sequential `keras.Model`.
        method: a name from `names()`.
        factor: the method's factor (see the table; λ for Norm Loss, wd for
            weight decay); required for methods that take one, refused for
            the others.
        layers: which layers, one of `LAYER_CHOICES`, a predicate
            `layer -> bool`, or None for the method's default.
        weight_decay_on: for `weight-decay`: `"kernels"` or `"all"` (every
            trainable parameter, as the references; see `attach`).

    Returns:
        A `MethodReport`; train `report.model` (a new model for a
        reparametrization, whose weights are copied from `model`), with
        `report.callbacks`, and for optimizer-level methods build the
        optimizer with `report.optimizer_options` (e.g.
        `keras_normloss.optimizers.NormLossSGD(lr, **report.optimizer_options)`).

    Raises:
        ValueError: for an unknown method or layer choice, a missing or
            unexpected factor.

    Example:

    ```python
    model = keras_normloss.models.get("resnet20")
    report = apply(model, "oni")
    model = report.model  # the convolutions wrapped in ONI, the classifier plain
    ```
    """
    method = get(method)
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
    layers = method.layers if layers is None else layers
    where = layer_selector(layers, model) if isinstance(layers, str) else layers
    report = MethodReport(method, model)
    if method.kind == "none":
        return report
    if method.kind == "optimizer":
        key = "normloss_factor" if method.name == "normloss-decoupled" else "weight_decay"
        report.optimizer_options = {key: factor}
        if method.name == "normloss-decoupled":
            report.optimizer_options["normloss_axes"] = model
        return report
    from keras_normloss.attach import attach  # attach(model, NAME) comes back here

    if method.kind == "penalty":
        regularizer = NormLoss(factor) if method.name == "normloss" else weight_decay(factor)
        parameters = weight_decay_on if method.name == "weight-decay" else "kernels"
        report.details = attach(
            model, regularizer, where=where, parameters=parameters, on_unsupported="ignore"
        )
        return report
    if method.kind == "constraint":
        report.details = attach(
            model, constraint=WeightRescaling(), where=where, on_unsupported="ignore"
        )
        return report
    if method.kind == "epoch-projection":
        slots = [s for s in norms.model_kernels(model) if where(s.layer)]
        report.callbacks = [EpochProjection([s.variable for s in slots], [s.axes for s in slots])]
        return report
    image_size = model.input_shape[1] if len(model.input_shape) == 4 else None
    report.model, report.details = reparam_model.reparametrize(
        model, _wrapper(method, image_size), where=where
    )
    return report
