"""Moved to `keras_normloss.methods` (reparametrization, weight_norm, oni, own); this module keeps the old import path working."""

from keras_normloss.methods.oni import ONI, ONI_PRESETS  # noqa: F401
from keras_normloss.methods.orthogonalization import orthogonal_group_size  # noqa: F401
from keras_normloss.methods.own import OrthogonalWeightNorm  # noqa: F401
from keras_normloss.methods.reparametrization import KernelReparametrization  # noqa: F401
from keras_normloss.methods.weight_norm import WeightNorm, data_dependent_init  # noqa: F401
from keras_normloss.norms import UnsupportedLayerError  # noqa: F401
