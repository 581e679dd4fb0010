"""`keras-normloss train`: one training run. The code lives in `keras_normloss.training`, one job
per module; this module keeps the names that callers (the command line, sweep, notebooks,
scripts) have always imported from here.

    keras-normloss train --preset quick --dataset synthetic --output runs/quick
"""

from keras_normloss import _lazy, training

__all__ = list(training.__all__)


# Every name of `keras_normloss.training`, imported when first used.
__getattr__ = _lazy.attributes(__name__, {n: f"keras_normloss.training:{n}" for n in __all__})
