"""keras-normloss: Norm Loss (Georgiou et al., ICPR 2020) and its peers for Keras 3.

Public names:
    NormLoss          the regularizer: factor * sum_c (1 - ||w_c||)**2
    weight_decay      the weight-decay baseline in the paper/PyTorch convention
    SoftOrthogonality, SRIP   orthogonality penalties (Bansal et al., NeurIPS 2018)
    WeightRescaling   the weight-rescaling (WRS) baseline, a constraint
    attach            add any of them to a built or pretrained model; attach(model, "wn") by name
    WeightNorm, ONI, OrthogonalWeightNorm   kernel reparametrizations (WN, ONI, OLM/OWN)
    reparametrize     wrap the layers of a built model in one of them
    EpochProjection   PBWN's per-epoch projection (a callback)
    methods           THE table of methods: methods.names(), methods.apply(model, name, factor)
    optimizers        decoupled Norm Loss / weight decay for any Keras optimizer
                      (keras_normloss.methods.decoupled; `keras_normloss.optimizers` imports too)
    channel_norms, oblique_distance, output_channel_axes, layer_kernels
    models            the papers' networks: models.get("resnet110"), models.names()
    NormMonitor       (keras_normloss.callbacks) channel-norm statistics each epoch
    schedules         learning-rate schedules: step, linear to zero, cosine; optional warmup
"""

from keras_normloss import startup

startup.quiet_tensorflow_import()  # before Keras imports TensorFlow: see startup.py

# `models` and `schedules` are imported so that their serializable objects (ZeroPadShortcut,
# LinearWarmup) are registered: `import keras_normloss` is then enough to load a saved model.
from keras_normloss import methods, models, optimizers, schedules
from keras_normloss.attach import AttachReport, attach
from keras_normloss.methods import apply as apply_method
from keras_normloss.methods.oni import ONI
from keras_normloss.methods.own import OrthogonalWeightNorm
from keras_normloss.methods.penalties import SRIP, NormLoss, SoftOrthogonality, weight_decay
from keras_normloss.methods.projections import EpochProjection, WeightRescaling
from keras_normloss.methods.reparametrize import reparametrize
from keras_normloss.methods.weight_norm import WeightNorm, data_dependent_init
from keras_normloss.norms import (
    UnsupportedLayerError,
    channel_norms,
    layer_kernels,
    oblique_distance,
    output_channel_axes,
)

__version__ = "0.1.0"

__all__ = [
    "AttachReport",
    "EpochProjection",
    "NormLoss",
    "ONI",
    "SRIP",
    "SoftOrthogonality",
    "OrthogonalWeightNorm",
    "WeightNorm",
    "apply_method",
    "data_dependent_init",
    "methods",
    "optimizers",
    "reparametrize",
    "schedules",
    "UnsupportedLayerError",
    "WeightRescaling",
    "attach",
    "channel_norms",
    "layer_kernels",
    "models",
    "oblique_distance",
    "output_channel_axes",
    "weight_decay",
]
