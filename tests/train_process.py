"""`keras-normloss train` in a child process, for the tests that kill or signal it."""

import os
import subprocess
import sys


def start_train(args, **kwargs):
    """Starts `python -m keras_normloss train ARGS` with unbuffered, captured output."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "keras_normloss", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
