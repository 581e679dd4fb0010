"""`keras-normloss train|sweep|plot`: the command line, and what its
subcommands share (one-line errors with exit status 2 for bad input).

Each subcommand lives in its own module with a `main(argv)` callable from
Python: `keras_normloss.train.main`, `keras_normloss.training.sweep.main`,
`keras_normloss.plotting.plots.main`. They are imported only when used, so that
`plot` does not start TensorFlow. `train` and `sweep` choose Keras's backend
(`start_backend`: `--backend`, else `KERAS_BACKEND`, ...) before anything
imports Keras. `parsers.py` beside this module holds the `train` command's options and the
ones `sweep` and the benchmarks share.
"""

import argparse
import functools
import importlib
import os
import re
import signal
import sys
import tempfile

from keras_normloss import startup
from keras_normloss.errors import UsageError

SUBCOMMANDS = {
    "train": ("keras_normloss.train", "train one run (a preset, a method, a factor)"),
    "sweep": ("keras_normloss.training.sweep", "a resumable grid of runs and its summary.csv"),
    "plot": ("keras_normloss.plotting.plots", "figures from run or sweep directories"),
}


# Commands that train: they choose Keras's backend (`start_backend`) once their options are read
# and start it (TensorFlow: 5-8 s); `plot` and every `--help` do not.
TRAINING_COMMANDS = ("train", "sweep")
# The Keras backends `train` and `sweep` run on -> the library each needs.
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax"}
# argparse reads "-1e-3" as an option (it only knows "-1" and "-.5" as numbers): every number
# is a value here, so that `--factor -1e-3` is refused as negative, not as a missing value.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus a line, and that reads any
    negative number as a value."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message):
        raise UsageError(message)


def command(name):
    """Decorates a subcommand's `main(argv)`: a `UsageError` prints one line
    (`keras-normloss NAME: error: ...`) and exits with status 2; a Ctrl-C that nothing else
    handled prints one line and exits with status 130."""

    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None):
            try:
                return main(argv)
            except UsageError as error:
                print(f"keras-normloss {name}: error: {error}", file=sys.stderr)
                raise SystemExit(2) from None
            except KeyboardInterrupt:
                # Ctrl-C outside a run's own handling (reading options, starting up).
                print(f"keras-normloss {name}: stopped by SIGINT (Ctrl-C)", file=sys.stderr)
                raise SystemExit(130) from None

        return wrapper

    return decorate


def check_writable_directory(directory, what):
    """Raises `UsageError` ("WHAT cannot be written: DIRECTORY is not writable (why)") unless a
    file can be created in `directory`. It tries: `os.access` says yes to root on a read-only
    filesystem. The one probe of `train --output` and `plot -o`."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise UsageError(
            f"{what} cannot be written: {directory} is not writable ({error.strerror or error})"
        ) from None


def _integer_at_least(minimum, expected):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = _integer_at_least(1, "a positive integer")  # an argparse type: an integer >= 1
non_negative_int = _integer_at_least(0, "an integer >= 0")  # an argparse type: >= 0


def seed(text):
    """An argparse type: a random seed, an integer from 0 to 2**32 - 1 (what NumPy takes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"expected a seed from 0 to {2**32 - 1} (2**32 - 1), got {text}"
        )
    return value


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative finite number, got {text}")
    return value


def _stop_while_starting(command):
    """SIGTERM and SIGINT handlers for the seconds before a run installs its own
    (`keras_normloss.training.faults.StopRequest`): TensorFlow's import swallowed a Ctrl-C
    here (the run then went on to the end), and SIGTERM killed without a word. Nothing has
    been written yet, so the process ends at once, with one line and 128 + the signal."""

    def handler(signum, frame):
        name = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else "SIGTERM"
        sys.stdout.flush()
        line = f"keras-normloss {command}: stopped by {name} while starting; nothing was written"
        os.write(startup.real_stderr(), (line + "\n").encode())  # stderr may be silenced just now
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def start_tensorflow(verbose=False):
    """Imports TensorFlow, for a command that has read its options and will train.

    Without `verbose` (`--verbose`), KERAS_NORMLOSS_VERBOSE=1 or KERAS_NORMLOSS_TF_LOGS=show,
    TensorFlow's start-up lines are not shown (`keras_normloss.startup`). Does nothing if it is
    imported already.
    """
    if verbose:
        os.environ[startup.ENV] = "show"
    if startup.tensorflow_logs_shown():
        if "tensorflow" not in sys.modules:
            try:
                import tensorflow  # noqa: F401
            except ImportError:
                pass  # reported by the import that needs it
        return
    startup.quiet_tensorflow_import(force=True)


def start_backend(backend=None, verbose=False):
    """Chooses Keras's backend for a command that will train, and starts it.

    It must run before Keras is imported: Keras reads `KERAS_BACKEND` once, when it is first
    imported. The backend is `backend` (`--backend`) if given, else the one of a Keras already
    imported, else `startup.default_backend()` (`KERAS_BACKEND`, `keras.json`, then tensorflow, or
    jax where only JAX is installed). TensorFlow is imported quietly (`start_tensorflow`); JAX
    needs nothing more.
    Child processes (each run of a sweep) inherit the choice through `KERAS_BACKEND`.

    Args:
        backend: "tensorflow", "jax", or None (see above).
        verbose: show TensorFlow's start-up lines.

    Returns:
        The backend's name.

    Raises:
        UsageError: for a backend other than tensorflow and jax, one whose library is not
            installed, or one other than the backend Keras was already imported with in this
            process (a notebook or a script that imported Keras first).

    Example:

    ```python
    start_backend("jax")  # before `import keras`: Keras then runs on JAX
    ```
    """
    imported = None
    if "keras" in sys.modules:
        import keras

        imported = keras.backend.backend()
    if backend:
        chosen, where = backend, "--backend"
    elif imported:
        chosen, where = imported, "the Keras imported in this process"
    else:
        chosen, where = startup.default_backend()
        if (chosen, where) == ("jax", startup.KERAS_DEFAULT):
            startup.record_jax_in_keras_json()  # so that `import keras` later starts on JAX too
    if chosen not in BACKENDS:
        raise UsageError(f"{where} is {chosen!r}; keras-normloss trains on tensorflow or jax")
    if imported is not None and imported != chosen:
        raise UsageError(
            f"--backend {chosen}: Keras was already imported in this process with the "
            f"{imported} backend, which cannot change; set KERAS_BACKEND={chosen} before "
            "anything imports Keras, or run the command in a new process"
        )
    if imported is None and not startup.installed(BACKENDS[chosen]):
        raise UsageError(
            f"the {chosen} backend ({where}) needs {BACKENDS[chosen]}, which is not installed; "
            "install it, or choose the other with --backend"
        )
    os.environ["KERAS_BACKEND"] = chosen
    if chosen == "tensorflow":
        start_tensorflow(verbose)
    return chosen


def main(argv=None):
    """The `keras-normloss` console script. Exits with status 141 (a shell's 128 + SIGPIPE),
    without a traceback, when the reader of its output has gone (`keras-normloss --help |
    head -1`)."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, where the error would print a traceback
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush
        return 141


def _main(argv):
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
    if argv[0] in TRAINING_COMMANDS:
        _stop_while_starting(argv[0])
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
