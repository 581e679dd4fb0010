"""`keras-normloss train`: one training run. The code lives in `keras_normloss.training`, one job
per module; this module keeps the names that callers (the command line, sweep, notebooks,
scripts) have always imported from here.

    keras-normloss train --preset quick --dataset synthetic --output runs/quick
"""

from keras_normloss import training

__all__ = list(training.__all__)


def __getattr__(name):
    """Every name of `keras_normloss.training`, imported when first used (PEP 562)."""
    if name not in training.__all__:
        raise AttributeError(f"module 'keras_normloss.train' has no attribute {name!r}")
    value = getattr(training, name)
    globals()[name] = value
    return value
