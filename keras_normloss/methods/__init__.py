"""Every way of controlling weight norms: the table of methods, one module per family.

table.py              THE table: names(), get(name), Method, KINDS
layer_choice.py       default layer choices: every kernel, the convolutions, the stem
application.py        apply(model, name, factor) and MethodReport
placement.py          placing a regularizer/constraint on the chosen kernels (attach's machinery)
penalties.py          NormLoss, weight_decay                     (coupled penalties)
projections.py        WeightRescaling (WRS/PBWN), EpochProjection (hard projections)
reparametrization.py  the base of the reparametrizations; reparametrize.py wraps a model's layers
weight_norm.py, oni.py, own.py, orthogonalization.py   WN, ONI, OLM/OWN and what ONI/OLM share
decoupled.py          decoupled Norm Loss / weight decay for any Keras optimizer;
                      keras_optimizer_hook.py the private Keras API it rests on
"""

from keras_normloss.methods.application import ONI_SETTINGS, PENALTIES, MethodReport, apply
from keras_normloss.methods.layer_choice import LAYER_CHOICES, layer_selector

# NormLoss, weight_decay, EpochProjection and WeightRescaling: what `keras_normloss.methods`
# (then one module) also exposed before the move.
from keras_normloss.methods.penalties import NormLoss, weight_decay  # noqa: F401
from keras_normloss.methods.projections import EpochProjection, WeightRescaling  # noqa: F401
from keras_normloss.methods.table import KINDS, METHODS, Method, get, names

__all__ = [
    "KINDS",
    "LAYER_CHOICES",
    "METHODS",
    "Method",
    "MethodReport",
    "ONI_SETTINGS",
    "PENALTIES",
    "apply",
    "get",
    "layer_selector",
    "names",
]
