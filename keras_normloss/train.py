"""`keras-normloss train`: one training run. The code lives in `keras_normloss.training`, one job
per module; this module keeps the names that callers (the command line, sweep, notebooks,
scripts) have always imported from here.

    keras-normloss train --preset quick --dataset synthetic --output runs/quick
"""

from keras_normloss import _lazy, training

# The command line's, beside the training engine's: `main(argv)` is the subcommand itself.
PARSER_NAMES = ("add_shared_arguments", "build_parser", "main", "shared_overrides")

__all__ = [*training.__all__, *PARSER_NAMES]

# Every name, imported when first used.
__getattr__ = _lazy.attributes(
    __name__,
    {
        **{n: f"keras_normloss.training:{n}" for n in training.__all__},
        **{n: f"keras_normloss.cli.parsers:{n}" for n in PARSER_NAMES},
    },
)
