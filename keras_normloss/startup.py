"""Keeps TensorFlow's C++ start-up lines off the command line's output.

TensorFlow prints them (oneDNN, CUDA drivers, absl's notice) while it is imported, before its
`TF_CPP_MIN_LOG_LEVEL` setting takes effect, so the only way to hide them is to import it with
the process's stderr (file descriptor 2) pointed at /dev/null. `keras_normloss/__init__.py`
calls `quiet_tensorflow_import()` before anything imports Keras; it acts only when the process is
the `keras-normloss` command (or `python -m keras_normloss`, or a script that asks for it), so a
library user's TensorFlow is left as they set it. `KERAS_NORMLOSS_TF_LOGS=show` shows the lines
again; `TF_CPP_MIN_LOG_LEVEL` set by the user is kept.
"""

import os
import sys

ENV = "KERAS_NORMLOSS_TF_LOGS"  # "show": TensorFlow's lines as usual; "hide": as the command


def _is_command_line():
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program in ("keras-normloss", "keras-normloss.exe"):
        return True
    argv = getattr(sys, "orig_argv", [])  # python -m keras_normloss: argv[0] is "-m" for now
    return any(a == "-m" and b == "keras_normloss" for a, b in zip(argv, argv[1:]))


def quiet_tensorflow_import():
    """Imports TensorFlow with stderr silenced, if this process is the command line.

    Also sets `TF_CPP_MIN_LOG_LEVEL=3` (unless set) for TensorFlow's later C++ messages, and
    `KERAS_NORMLOSS_TF_LOGS=hide` so that child processes (each run of a sweep) do the same.
    Does nothing if `KERAS_NORMLOSS_TF_LOGS=show`, or if TensorFlow is imported already.

    Example:

    ```python
    os.environ["KERAS_NORMLOSS_TF_LOGS"] = "hide"  # a script that wants the command's quiet
    import keras_normloss
    ```
    """
    wanted = os.environ.get(ENV)
    if wanted == "show" or "tensorflow" in sys.modules:
        return
    if wanted != "hide" and not _is_command_line():
        return
    os.environ[ENV] = "hide"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to hide
        return
    null = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(null, 2)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass  # the JAX or PyTorch backend without TensorFlow: the error, if any, comes later
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
