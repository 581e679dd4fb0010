"""The run directory: whether `--output` can hold this run, and its files written atomically.

A run directory holds `config.json`, `metrics.csv`, `tensorboard/`, `checkpoint/` (until the run
is finished), `model.keras` and `results.json`; see `keras_normloss.training.run`.
"""

import dataclasses
import json
import os
import tempfile

from keras_normloss import cli
from keras_normloss.training.config import OPERATIONAL

OUTPUTS = ("results.json", "metrics.csv", "model.keras", "tensorboard/")


def write_json(path, payload):
    """Writes JSON atomically: to `PATH.tmp`, flushed to disk, then renamed to `path`.

    A crash or a full disk leaves either the old file or the new one, never a part. On an
    `OSError` the temporary file is removed and the error raised.
    """
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_json(path):
    """The content of a JSON file."""
    with open(path) as f:
        return json.load(f)


def _check_writable(output):
    """Raises UsageError unless `output` is, or can be created as, a writable directory."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise cli.UsageError(f"--output {output} is a file, not a directory; choose a directory")
    existing = os.path.abspath(output)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise cli.UsageError(f"--output {output} cannot be created: {existing} is a file")
    # os.access alone says yes to root on a read-only filesystem: try it.
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise cli.UsageError(
            f"--output {output} cannot be written: {existing} is not writable "
            f"({error.strerror or error})"
        ) from None


def check_run_dir(config):
    """Returns the state of `config.output`: "new", "resume" or "finished".

    Writes nothing.

    Raises:
        keras_normloss.cli.UsageError: if the directory is a file, cannot be
            written, holds something that is not a run, or holds another run.
    """
    _check_writable(config.output)
    path = os.path.join(config.output, "config.json")
    if not os.path.exists(path):
        if os.path.isdir(config.output) and os.listdir(config.output):
            raise cli.UsageError(
                f"{config.output} is not empty and holds no config.json; choose a new --output"
            )
        return "new"
    try:
        saved = read_json(path)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise cli.UsageError(
            f"{path} cannot be read ({error}); choose a new --output, or repair that file"
        ) from None
    mine = json.loads(json.dumps(config.identity()))
    theirs = {k: v for k, v in saved.items() if k in mine or k not in OPERATIONAL}
    # A field added to RunConfig after the directory was written (mixed_precision, ...) had
    # its default value there: the run is the same one.
    for field in dataclasses.fields(config):
        if field.name not in OPERATIONAL and field.default is not dataclasses.MISSING:
            theirs.setdefault(field.name, json.loads(json.dumps(field.default)))
    if theirs != mine:
        differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise cli.UsageError(
            f"{config.output} holds a different run (differs in: {', '.join(differing)}); "
            "choose a new --output or repeat that run's command"
        )
    return "finished" if os.path.exists(os.path.join(config.output, "results.json")) else "resume"
