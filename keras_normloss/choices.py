"""The names the command line offers for its options, without Keras: one place each.

`keras-normloss --help` and argument errors answer without starting TensorFlow, so the choices
of `--lr-schedule`, `--optimizer`, `--augment`, `--mixed-precision` and `--jit-compile` cannot
be read off the Keras-side tables. Those tables take their names from here (`schedules`,
`data.augmentation`) or are keyed by them (`training.build.OPTIMIZER_CLASSES`,
`training.compute.POLICIES`, `training.compute.JIT_COMPILE`); `tests/test_cli.py` checks that
the keys and these names agree.
"""

LR_SCHEDULES = ("step", "linear", "cosine", "constant")  # keras_normloss.schedules
OPTIMIZERS = ("sgd", "adam", "adamw")  # training.build.OPTIMIZER_CLASSES
AUGMENTATIONS = ("crop-flip", "crop", "none")  # keras_normloss.data.augmentation
MIXED_PRECISION = ("off", "float16", "bfloat16")  # training.compute.POLICIES
JIT_COMPILE = ("auto", "on", "off")  # training.compute.JIT_COMPILE
