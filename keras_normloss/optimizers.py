"""Moved to `keras_normloss.methods.decoupled`; this module keeps the old import path working."""

from keras_normloss.methods.decoupled import (  # noqa: F401
    NormLossAdam,
    NormLossAdamW,
    NormLossSGD,
    channel_axes_by_path,
    decoupled_normloss_update,
    extend_with_normloss,
)
from keras_normloss.methods.keras_optimizer_hook import (  # noqa: F401
    KERAS_VERSION_CHECKED,
    check_private_api,
)
