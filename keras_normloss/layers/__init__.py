"""Kernel reparametrizations as Keras wrapper layers (WN, ONI, OLM/OWN), and wrapping a built
model's layers in one of them.

reparametrization.py   KernelReparametrization, the base every wrapper shares
weight_norm.py         WeightNorm and its data-dependent initialization
orthogonalization.py   what ONI and OWN share (centring, groups)
oni.py, own.py         ONI (Newton's iterations) and OrthogonalWeightNorm (OLM's eigendecomposition)
reparametrize.py       reparametrize(model, wrapper): the layers of a built model wrapped
"""

from keras_normloss.layers.oni import ONI, ONI_PRESETS
from keras_normloss.layers.orthogonalization import orthogonal_group_size
from keras_normloss.layers.own import OrthogonalWeightNorm
from keras_normloss.layers.reparametrization import KernelReparametrization
from keras_normloss.layers.reparametrize import ReparamEntry, ReparamReport, reparametrize
from keras_normloss.layers.weight_norm import WeightNorm, data_dependent_init

__all__ = [
    "KernelReparametrization",
    "ONI",
    "ONI_PRESETS",
    "OrthogonalWeightNorm",
    "ReparamEntry",
    "ReparamReport",
    "WeightNorm",
    "data_dependent_init",
    "orthogonal_group_size",
    "reparametrize",
]
