"""The names the command line offers for its options, and the fields renamed since runs were
first written, without Keras: one place each.

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

# Fields renamed since runs were first written: old name -> new. config.json files and
# summary.csv rows made before a rename, and `make_config(regularizer=...)`, still read.
RENAMED = {"regularizer": "method"}


def upgrade_record(record):
    """A config.json or summary.csv row, or `make_config`'s overrides, with every field of
    `RENAMED` under its new name (the new one wins where a record has both).

    Example:

    ```python
    upgrade_record({"regularizer": "normloss"})  # {"method": "normloss"}
    ```
    """
    record = dict(record)
    for old, new in RENAMED.items():
        if old in record:
            value = record.pop(old)
            if record.get(new) is None:
                record[new] = value
    return record
