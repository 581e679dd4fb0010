"""The run directory: whether `--output` can hold this run, its files written atomically, and
whether a finished run's files are whole.

A run directory holds `config.json`, `metrics.csv`, `tensorboard/`, `checkpoint/` (until the run
is finished), `model.keras` and `results.json`, and `diverged.json` if the run diverged; see
`keras_normloss.training.run`.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import zipfile

from keras_normloss import cli, errors
from keras_normloss.choices import upgrade_record
from keras_normloss.training.config import DERIVED, OPERATIONAL
from keras_normloss.training.faults import Diverged, RunFilesDamaged

OUTPUTS = ("results.json", "metrics.csv", "dynamics.csv", "model.keras", "tensorboard/")
DIVERGED_FILE = "diverged.json"
# What the summary line and `sweep` read from results.json.
RESULTS_KEYS = ("final_test_error", "best_test_error", "best_epoch", "epochs", "wall_seconds")


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


def sha256(path):
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_writable(output):
    """Raises UsageError unless `output` is, or can be created as, a writable directory."""
    if not output:
        raise errors.UsageError("--output is empty; name the run directory")
    if os.path.exists(output) and not os.path.isdir(output):
        raise errors.UsageError(f"--output {output} is a file, not a directory; choose a directory")
    existing = os.path.abspath(output)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise errors.UsageError(f"--output {output} cannot be created: {existing} is a file")
    cli.check_writable_directory(existing, f"--output {output}")


def check_run_dir(config):
    """Returns the state of `config.output`: "new", "resume" or "finished".

    Writes nothing.

    Raises:
        keras_normloss.errors.UsageError: if the directory is a file, cannot be
            written, holds something that is not a run, or holds another run.
    """
    _check_writable(config.output)
    path = os.path.join(config.output, "config.json")
    if not os.path.exists(path):
        if os.path.exists(os.path.join(config.output, "summary.csv")):
            raise errors.UsageError(
                f"{config.output} is a sweep directory (it holds summary.csv), not a run; "
                "choose a new --output"
            )
        if os.path.isdir(config.output) and os.listdir(config.output):
            raise errors.UsageError(
                f"{config.output} is not empty and holds no config.json; choose a new --output"
            )
        return "new"
    try:
        saved = read_json(path)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise errors.UsageError(
            f"{path} cannot be read ({error}); choose a new --output, or repair that file"
        ) from None
    mine = json.loads(json.dumps(config.identity()))
    saved = upgrade_record(saved)  # written before a field's rename
    theirs = {
        k: v for k, v in saved.items() if k in mine or k not in (*OPERATIONAL, *DERIVED)
    }
    # A field added to RunConfig after the directory was written (mixed_precision, ...) had
    # its default value there: the run is the same one.
    for field in dataclasses.fields(config):
        if field.name not in OPERATIONAL and field.default is not dataclasses.MISSING:
            theirs.setdefault(field.name, json.loads(json.dumps(field.default)))
    if theirs != mine:
        differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise errors.UsageError(
            f"{config.output} holds a different run (differs in: {', '.join(differing)}); "
            "choose a new --output or repeat that run's command"
        )
    if not os.path.exists(os.path.join(config.output, "results.json")):
        return "resume"
    check_finished(config.output)
    return "finished"


def check_finished(run_dir):
    """Checks that a run directory holding results.json is whole: results.json reads and holds
    the results, and model.keras is the complete file that was written (the SHA-256 recorded in
    results.json, or a zip archive whose members' checksums hold for older runs).

    Returns:
        The content of results.json.

    Raises:
        keras_normloss.training.faults.RunFilesDamaged: if not; nothing is changed. The
            checkpoints of a finished run are removed, so neither file can be rebuilt.
    """
    path = os.path.join(run_dir, "results.json")
    try:
        results = read_json(path)
        if not isinstance(results, dict) or any(k not in results for k in RESULTS_KEYS):
            raise ValueError("it lacks the results")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise RunFilesDamaged(
            f"{path} of this finished run cannot be read ({str(error).splitlines()[0]}); "
            "metrics.csv and model.keras are kept: restore results.json from a copy, or run "
            "again in a new --output"
        ) from None
    model = os.path.join(run_dir, "model.keras")
    why = _model_file_problem(model, results.get("model_sha256"))
    if why:
        raise RunFilesDamaged(
            f"{model} of this finished run {why}; results.json and metrics.csv are kept: "
            "restore model.keras from a copy, or run again in a new --output to get the model"
        )
    return results


def _model_file_problem(path, recorded_sha256):
    if not os.path.exists(path):
        return "is missing"
    if os.path.getsize(path) == 0:
        return "is empty"
    if recorded_sha256:
        return None if sha256(path) == recorded_sha256 else "is damaged (SHA-256 differs)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as error:
        return f"is damaged ({error})"
    return f"is damaged ({bad} fails its checksum)" if bad else None


def record_divergence(run_dir, error):
    """Writes `diverged.json`: what became non-finite and where (a `faults.NonFiniteLoss`), so
    that the same command says so instead of diverging again."""
    write_json(
        os.path.join(run_dir, DIVERGED_FILE),
        {"what": error.what, "epoch": error.epoch + 1, "step": error.step, "message": str(error)},
    )


def check_not_diverged(run_dir):
    """Raises `faults.Diverged` if an earlier attempt of the run in `run_dir` diverged."""
    path = os.path.join(run_dir, DIVERGED_FILE)
    if not os.path.exists(path):
        return
    try:
        record = read_json(path)
        where = f"epoch {record['epoch']}" + (f", step {record['step']}" if record["step"] else "")
        what = record["what"]
    except (OSError, ValueError, KeyError, TypeError):
        what, where = "loss or weights", "an unknown step"
    raise Diverged(
        f"{run_dir} diverged in an earlier attempt (the {what} became non-finite at {where}); "
        "the same settings would diverge again: rerun with a smaller --lr (or --factor) in a "
        f"new --output, or delete {path} to retry from the last good checkpoint"
    )


class RunDirectoryBusy(errors.UsageError):
    """Another process is training the run in this directory (exit status 2)."""


@contextlib.contextmanager
def exclusive(output):
    """Holds an exclusive lock on the run directory `output` (made if missing) for the block.

    `flock` on the directory itself: no file is added, and the kernel releases the lock when
    the process that holds it ends, however it ends (kill -9 included), so a stale lock is
    impossible. A second process that asks for it is refused at once: two processes training
    one run would both append to metrics.csv (a sweep killed with -9 once left its run
    training, and the sweep started again trained the same run beside it: epoch 1 twice).

    A directory it made and the block left empty (bad input found later) is removed again.

    Raises:
        RunDirectoryBusy: if another process holds it.
    """
    made = not os.path.exists(output)
    os.makedirs(output, exist_ok=True)
    fd = os.open(output, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryBusy(
                f"{output} is being trained by another process; wait for it to end, or stop "
                "it (the same command then resumes the run)"
            ) from None
        yield
    finally:
        if made and not os.listdir(output):
            os.rmdir(output)
        os.close(fd)  # releases the lock
