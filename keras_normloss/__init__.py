"""keras-normloss: Norm Loss (Georgiou et al., ICPR 2020) and its peers for Keras 3.

Public names:
    NormLoss          the regularizer: factor * sum_c (1 - ||w_c||)**2
    weight_decay      the weight-decay baseline in the paper/PyTorch convention
    WeightRescaling   the weight-rescaling (WRS) baseline, a constraint
    attach            add any of them to a built or pretrained model
    channel_norms, oblique_distance, output_channel_axes, layer_kernels
    models            the papers' networks: models.get("resnet110"), models.names()
    NormMonitor       (keras_normloss.callbacks) channel-norm statistics each epoch
"""

# `models` is imported so that its serializable layer (ZeroPadShortcut) is
# registered: `import keras_normloss` is then enough to load a saved model.
from keras_normloss import models
from keras_normloss.attach import AttachReport, attach
from keras_normloss.constraints import WeightRescaling
from keras_normloss.norms import (
    UnsupportedLayerError,
    channel_norms,
    layer_kernels,
    oblique_distance,
    output_channel_axes,
)
from keras_normloss.regularizers import NormLoss, weight_decay

__version__ = "0.1.0"

__all__ = [
    "AttachReport",
    "NormLoss",
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
