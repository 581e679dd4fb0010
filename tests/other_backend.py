"""Runs a test script under another Keras backend, in a subprocess (the backend is fixed
when Keras is imported), and returns the JSON object it prints on its last line."""

import json
import os
import subprocess
import sys


def run_script(script, backend, stdin=None, timeout=300):
    """Runs `script` with `KERAS_BACKEND=backend` (CPU only); returns its last line, parsed.

    Fails the calling test with the script's stderr if it exits non-zero.
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == backend
    return out
