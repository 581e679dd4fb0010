"""Keeps TensorFlow's C++ start-up lines off the command line's output.

TensorFlow prints them (oneDNN, CUDA drivers, absl's notice) while it is imported, before its
`TF_CPP_MIN_LOG_LEVEL` setting takes effect, so the only way to hide them is to import it with
the process's stderr (file descriptor 2) pointed at /dev/null. `keras_normloss/__init__.py`
calls `quiet_tensorflow_import()` before anything imports Keras when imported from Python, and
`cli.start_tensorflow` once a training command has read its options; it acts only in the
`keras-normloss` command (or `python -m keras_normloss`, or a script that asks for it), so a
library user's TensorFlow is left as they set it. `KERAS_NORMLOSS_TF_LOGS=show`,
`KERAS_NORMLOSS_VERBOSE=1` or `--verbose` show the lines again; `TF_CPP_MIN_LOG_LEVEL` set by the
user is kept. TF_ENABLE_ONEDNN_OPTS=0 would also hide the first line, but halves training speed
on CPUs.
"""

import contextlib
import importlib.util
import json
import os
import sys

ENV = "KERAS_NORMLOSS_TF_LOGS"  # "show": TensorFlow's lines as usual; "hide": as the command
VERBOSE_ENV = "KERAS_NORMLOSS_VERBOSE"  # 1: the same as ENV=show (and `--verbose`)

_real_stderr = 2  # the descriptor of the user's stderr while fd 2 is silenced


def real_stderr():
    """The file descriptor of the user's stderr, also while `stderr_silenced` holds fd 2."""
    return _real_stderr


@contextlib.contextmanager
def stderr_silenced():
    """Sends file descriptor 2 to /dev/null inside the block (`real_stderr()` still reaches it)."""
    global _real_stderr
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    _real_stderr = saved
    try:
        yield
    finally:
        _real_stderr = 2
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def configured_backend():
    """The Keras backend this process is configured for, without importing Keras: the
    `KERAS_BACKEND` variable, else `keras_json_backend()`, else None (Keras itself then takes
    tensorflow).

    Example:

    ```python
    os.environ["KERAS_BACKEND"] = "jax"
    configured_backend()  # 'jax'
    ```
    """
    return os.environ.get("KERAS_BACKEND") or keras_json_backend()


def default_backend():
    """The Keras backend for a process that has not imported Keras, and where the choice comes
    from, without importing Keras: `KERAS_BACKEND` if set; else `keras.json`'s backend if its
    library is installed (Keras writes tensorflow there the first time it is imported, also on a
    machine without TensorFlow); else tensorflow where it is installed or JAX is not, and jax where
    only JAX is (Keras's own default would fail there).

    Returns:
        (name, where), where is "KERAS_BACKEND", "~/.keras/keras.json's backend" or
        `KERAS_DEFAULT`. The name is not checked against the backends keras-normloss trains on.

    Example:

    ```python
    default_backend()  # ('tensorflow', "Keras's default") with TensorFlow installed, nothing set
    ```
    """
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    configured = keras_json_backend()
    if configured and installed(configured):
        return configured, "~/.keras/keras.json's backend"
    if installed("tensorflow") or not installed("jax"):
        return "tensorflow", KERAS_DEFAULT
    return "jax", KERAS_DEFAULT


KERAS_DEFAULT = "Keras's default"


def default_to_jax_without_tensorflow():
    """Sets `KERAS_BACKEND=jax` before Keras is imported where `default_backend()` is jax by
    default: TensorFlow is missing, JAX is installed, and nothing names another backend. Keras
    itself would start on TensorFlow there (also on a machine installed from
    requirements-jax.txt) and fail to import.
    """
    if "keras" not in sys.modules and default_backend() == ("jax", KERAS_DEFAULT):
        os.environ["KERAS_BACKEND"] = "jax"
        record_jax_in_keras_json()


def _keras_json_path():
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras.json")


def record_jax_in_keras_json():
    """Writes `"backend": "jax"` into Keras's configuration file where only JAX is installed and
    the file names no installed backend (it is missing, or says tensorflow, which Keras writes
    the first time it is imported, also where TensorFlow is not installed).

    Without it, a script or notebook that imports `keras` before `keras_normloss`, or loads a
    saved model with `keras.models.load_model` in a new process, fails there with
    `ModuleNotFoundError: tensorflow`. Called when `keras_normloss` (or its command line)
    chooses JAX by default; the file's other settings are kept. Nothing happens where it
    cannot be written (a read-only home).
    """
    if installed("tensorflow") or not installed("jax"):
        return
    configured = keras_json_backend()
    if configured and installed(configured):
        return  # the user's own choice
    path = _keras_json_path()
    try:
        with open(path) as f:
            settings = json.load(f)
        if not isinstance(settings, dict):
            settings = {}
    except (OSError, ValueError):
        settings = {}
    settings["backend"] = "jax"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(f"{path}.tmp", "w") as f:
            json.dump(settings, f, indent=4)
        os.replace(f"{path}.tmp", path)
    except OSError:
        pass


def installed(module):
    """Whether `module` can be imported, without importing it (False for a module blocked from
    import, or a dotted or malformed name such as a bad backend in keras.json)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None (blocked)
        return False


def keras_json_backend():
    """The `backend` of Keras's configuration file (`$KERAS_HOME/keras.json`, default
    `~/.keras/keras.json`), or None.

    Keras writes that file with its default, tensorflow, the first time it is imported, also
    where TensorFlow is not installed; so it says what a user chose only where it names an
    installed backend.
    """
    try:
        with open(_keras_json_path()) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return backend if isinstance(backend, str) and backend else None


def tensorflow_logs_shown():
    """Whether the user asked to see TensorFlow's start-up lines."""
    return os.environ.get(ENV) == "show" or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def is_command_line():
    """True in `keras-normloss ...` (its script, `.exe` or `-script.py` on Windows) and in
    `python -m keras_normloss ...`: the one test of it (`__init__` imports less there)."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program.startswith("keras-normloss"):
        return True
    argv = getattr(sys, "orig_argv", [])  # python -m keras_normloss: argv[0] is "-m" for now
    return any(a == "-m" and b == "keras_normloss" for a, b in zip(argv, argv[1:]))


def quiet_tensorflow_import(force=False):
    """Imports TensorFlow with stderr silenced, if this process is the command line.

    Also sets `TF_CPP_MIN_LOG_LEVEL=3` (unless set) for TensorFlow's later C++ messages, and
    `KERAS_NORMLOSS_TF_LOGS=hide` so that child processes (each run of a sweep) do the same.
    Does nothing if the user asked for the lines (`tensorflow_logs_shown`), or if TensorFlow is
    imported already.

    Args:
        force: act even outside the command line (what `cli.start_tensorflow` asks).

    Example:

    ```python
    os.environ["KERAS_NORMLOSS_TF_LOGS"] = "hide"  # a script that wants the command's quiet
    import keras_normloss
    ```
    """
    if tensorflow_logs_shown() or "tensorflow" in sys.modules:
        return
    if configured_backend() not in (None, "tensorflow"):
        return  # Keras runs on JAX (or another backend): TensorFlow is not needed
    if not force and os.environ.get(ENV) != "hide" and not is_command_line():
        return
    os.environ[ENV] = "hide"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        os.fstat(2)
    except OSError:  # no stderr at all: nothing to hide
        return
    with stderr_silenced():
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass  # the JAX or PyTorch backend without TensorFlow: the error, if any, comes later
