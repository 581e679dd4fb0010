"""Decoupled Norm Loss and weight decay for any Keras optimizer (the weights shrunk outside the
gradient, as AdamW does), and the one private Keras API they rest on.

decoupled.py              NormLossSGD, NormLossAdam, NormLossAdamW, extend_with_normloss(cls)
keras_optimizer_hook.py   the private Keras optimizer API, checked on use (check_private_api)
"""

from keras_normloss.optimizers.decoupled import (
    NormLossAdam,
    NormLossAdamW,
    NormLossSGD,
    channel_axes_by_path,
    decoupled_normloss_update,
    extend_with_normloss,
)
from keras_normloss.optimizers.keras_optimizer_hook import KERAS_VERSION_CHECKED, check_private_api

__all__ = [
    "KERAS_VERSION_CHECKED",
    "NormLossAdam",
    "NormLossAdamW",
    "NormLossSGD",
    "channel_axes_by_path",
    "check_private_api",
    "decoupled_normloss_update",
    "extend_with_normloss",
]
