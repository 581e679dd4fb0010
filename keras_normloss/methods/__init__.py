"""Every way of controlling weight norms, by name: the table of methods over the Keras objects
that implement them (`regularizers/`, `constraints/`, `layers/`, `optimizers/`).

table.py              THE table: names(), get(name), Method, KINDS
norm_theory.py        each method's timescale and equilibrium angular update (no Keras)
layer_choice.py       default layer choices: every kernel, the convolutions, the stem
application.py        apply(model, name, factor) and MethodReport
placement.py          placing a regularizer/constraint on the chosen kernels (attach's machinery)
"""

from keras_normloss import _lazy
from keras_normloss.methods.table import KINDS, METHODS, Method, get, names

# Imported when first used (PEP 562): they need Keras, hence TensorFlow (5-8 s), and the command
# line reads the table (names, factors) before it knows whether it will train.
_LAZY = {
    "ONI_SETTINGS": "keras_normloss.methods.application:ONI_SETTINGS",
    "PENALTIES": "keras_normloss.methods.application:PENALTIES",
    "MethodReport": "keras_normloss.methods.application:MethodReport",
    "apply": "keras_normloss.methods.application:apply",
    "LAYER_CHOICES": "keras_normloss.methods.layer_choice:LAYER_CHOICES",
    "layer_selector": "keras_normloss.methods.layer_choice:layer_selector",
}


__getattr__ = _lazy.attributes(__name__, _LAZY)


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
