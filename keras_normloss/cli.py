"""`keras-normloss train|sweep|plot`: the command line, and what its
subcommands share (one-line errors with exit status 2 for bad input).

Each subcommand lives in its own module with a `main(argv)` callable from
Python: `keras_normloss.train.main`, `keras_normloss.sweep.main`,
`keras_normloss.plots.main`. They are imported only when used, so that
`plot` does not start TensorFlow.
"""

import argparse
import functools
import importlib
import sys

SUBCOMMANDS = {
    "train": ("keras_normloss.train", "train one run (a preset, a regularizer, a factor)"),
    "sweep": ("keras_normloss.sweep", "a resumable grid of runs and its summary.csv"),
    "plot": ("keras_normloss.plots", "figures from run or sweep directories"),
}


class UsageError(ValueError):
    """Bad input from the user: reported in one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus a line."""

    def error(self, message):
        raise UsageError(message)


def command(name):
    """Decorates a subcommand's `main(argv)`: a `UsageError` prints one line
    (`keras-normloss NAME: error: ...`) and exits with status 2."""

    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None):
            try:
                return main(argv)
            except UsageError as error:
                print(f"keras-normloss {name}: error: {error}", file=sys.stderr)
                raise SystemExit(2) from None

        return wrapper

    return decorate


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative finite number, got {text}")
    return value


def main(argv=None):
    """The `keras-normloss` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        lines = ["usage: keras-normloss {train,sweep,plot} ...", ""]
        lines += [f"  {name:6s} {help}" for name, (_, help) in SUBCOMMANDS.items()]
        lines += ["", "`keras-normloss COMMAND --help` describes each."]
        if argv and argv[0] not in ("-h", "--help"):
            print(
                f"keras-normloss: error: unknown command {argv[0]!r}; expected one of "
                f"{', '.join(SUBCOMMANDS)}",
                file=sys.stderr,
            )
            raise SystemExit(2)
        print("\n".join(lines))
        return 0 if argv else 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
