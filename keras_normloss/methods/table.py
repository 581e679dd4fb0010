"""THE table of methods: every way of controlling weight norms that keras-normloss ships.

A method is a name (the one `train --method` and `attach(model, NAME)` take), what it does to a
model (a penalty on kernels, a constraint, a reparametrization of kernels, or an optimizer-level
decoupled update), what its factor means and which layers it touches by default. `train`,
`sweep`, `attach` and the overhead benchmark all read this table; nothing else decides which
methods exist or which layers they touch. Default factors per training setting live in
`keras_normloss.training.presets`.

| name | kind | factor | layers by default | reference |
|---|---|---|---|---|
| none | - | - | - | |
| weight-decay | penalty `wd/2 Σw²` | wd | every parameter (or kernels) | the papers' baseline |
| normloss | penalty `λ Σ_c (1 − ‖w_c‖)²` | λ | conv and Dense kernels | Georgiou et al. 2020 |
| so | penalty `λ ‖WᵀW − I‖²_F`, W = (fan_in, C_out), Gram on the smaller side | λ | conv and Dense kernels | Bansal et al. 2018 (SO) |
| srip | penalty `λ σ(WᵀW − I)²`, σ by 2 power-iteration steps | λ | conv and Dense kernels | Bansal et al. 2018 (SRIP) |
| wrs | constraint: `w_c ← w_c/‖w_c‖` after each step | - | conv and Dense kernels | Liu et al. 2021 |
| pbwn | the same projection as wrs | - | convs, no shortcut, no classifier | Huang et al. 2017 |
| pbwn-epoch | that projection after each epoch | - | as pbwn | Huang et al. 2017 ("NP-Epoch") |
| wn | reparametrization `g_c v_c/‖v_c‖` | - | as pbwn | Salimans & Kingma 2016 |
| oni | reparametrization: Newton iteration, v starts orthogonalized | - | as pbwn | Huang et al. 2020 |
| olm | reparametrization: centred whitening | - | as pbwn | Huang et al. 2018 |
| olm-l1 | olm on the first conv only | - | the stem | Huang et al. 2018 |
| normloss-decoupled | optimizer: `w_c ← w_c(1 − lr·2λ(1 − 1/‖w_c‖))` | λ | as normloss | Ranger21's form |
| weight-decay-decoupled | optimizer: `w ← w(1 − lr·wd)` | wd | as weight-decay | PyTorch AdamW / optax form |
"""

import dataclasses

KINDS = ("none", "penalty", "constraint", "epoch-projection", "reparametrization", "optimizer")
# Which parameters a penalty acts on: conv and Dense kernels, or every trainable parameter (the
# references' weight decay). Here, with no Keras import, so that the command line reads it fast.
PARAMETERS = ("kernels", "all")


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of the table of methods.

    Attributes:
        name: the name `train --method` and `attach(model, name)` take.
        kind: one of `KINDS`.
        summary: what it does, in one line (docs/methods.md's table).
        factor: what `--factor` means for it, or `None` if it takes none.
        layers: the layers it touches by default, one of `LAYER_CHOICES`.
        reference: where it comes from.
        relaxation_rate: for a method with a factor, `k` in the linearised rate `k·η·λ` per
            step at which its pull moves a channel's norm (or a singular value) toward its
            target: 1 for weight decay (gradient `λ·w`), 2 for Norm Loss (gradient
            `2λ·(‖w‖ − 1)` along w), 8 for SO and SRIP (`d(s − 1) = −8ηλ(s − 1)` near s = 1);
            `keras_normloss.methods.norm_theory` turns it into a timescale. `None` otherwise.
    """

    name: str
    kind: str
    summary: str
    factor: object
    layers: object
    reference: str
    relaxation_rate: object = None

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
        relaxation_rate=1,
    ),
    Method(
        "normloss",
        "penalty",
        "Norm Loss λ·Σ_c (1 − ‖w_c‖)², a soft pull to unit channel norms",
        "λ",
        "kernels",
        "Georgiou et al., ICPR 2020, arXiv 2103.06583",
        relaxation_rate=2,
    ),
    Method(
        "so",
        "penalty",
        "soft orthogonality λ·‖WᵀW − I‖²_F, W the (fan_in, C_out) kernel, Gram on the smaller side",
        "λ",
        "kernels",  # as the reference's SRIP code: every weight of rank >= 2, classifier included
        "Bansal et al., NeurIPS 2018, arXiv 1810.09102, eq. 2 (no code in the reference repository)",
        relaxation_rate=8,
    ),
    Method(
        "srip",
        "penalty",
        "SRIP λ·σ(WᵀW − I)², σ by 2 power-iteration steps from a fixed start, smaller side",
        "λ",
        "kernels",  # Wide-Resnet/train_n.py: every weight of rank >= 2, classifier included
        "Bansal et al., NeurIPS 2018; VITA-Group/Orthogonality-in-CNNs, Wide-Resnet/train_n.py",
        relaxation_rate=8,
    ),
    Method(
        "wrs",
        "constraint",
        "weight rescaling: w_c ← w_c/‖w_c‖ after every step",
        None,
        "kernels",
        "Liu et al., arXiv 2102.03497",
    ),
    # PBWN's layers are those of the reference's ResNets, the models its scripts run
    # (NormProjection: models/CIFAR/old_r_PN_EI.lua, old_r_PN.lua): every convolution, the
    # classifier plain. Its WRN model (models/CIFAR/wr_PN_v1.lua, run by no script) projects the
    # stem only, once per epoch; we do not switch to that on WRNs, where the same name would then
    # mean another method: it is `apply(model, "pbwn-epoch", layers="stem")`.
    Method(
        "pbwn",
        "constraint",
        "projection-based WN: w_c ← w_c/‖w_c‖ after every step (the wrs operation)",
        None,
        "convs",
        "Huang et al., arXiv 1710.02338 ('NP'; NormProjection old_r_PN_EI.lua)",
    ),
    Method(
        "pbwn-epoch",
        "epoch-projection",
        "w_c ← w_c/‖w_c‖ after every epoch",
        None,
        "convs",
        "Huang et al., arXiv 1710.02338 ('NP-Epoch'; NormProjection old_r_PN.lua)",
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
        "orthogonalization by Newton's iteration (T steps), then a learnable scale; v starts "
        "orthogonalized (CIFAR) or as drawn (ImageNet), as the references",
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
        relaxation_rate=2,
    ),
    Method(
        "weight-decay-decoupled",
        "optimizer",
        "decoupled weight decay: w ← w·(1 − lr·wd) outside the optimizer",
        "wd",
        "kernels",  # every parameter under train's default --weight-decay-on all
        "PyTorch's AdamW / optax's w·(1 − lr·wd); Loshchilov & Hutter's multiply wd by "
        "the schedule multiplier η_t, not by lr",
        relaxation_rate=1,
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
