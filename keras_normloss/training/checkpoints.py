"""Checkpoints: the last few kept, each verified before it is trusted, written so that no fault
loses the previous one.

A checkpoint at position (epoch e, step k): e epochs done and k steps of the next, is two files
in `checkpoint/`:

    ckpt-eEEEEE-sKKKKKKK.weights.h5   weights and optimizer state (`model.save_weights`)
    ckpt-eEEEEE-sKKKKKKK.json         its sidecar: the position, the weights file's size and
                                      SHA-256, and the random generators' states

The weights are written to a temporary name, flushed to disk and renamed; the sidecar is written
after them, atomically, so a checkpoint exists only once both are complete. Then all but the
newest `keep` checkpoints are removed (sidecar first). A crash or a full disk at any moment
leaves the previous checkpoints as they were.

On resume the newest checkpoint whose sidecar reads, whose weights match its size and SHA-256,
which actually loads and whose weights and penalty are finite is taken; each newer one skipped is named in one line with the reason
and moved to `checkpoint/skipped/` (kept for a look, never counted again). If none loads, nothing
is deleted and the run stops (`CheckpointsUnreadable`).

This is what `tf.train.CheckpointManager(max_to_keep=...)` and Orbax's `CheckpointManager` do,
with Keras's own weights format, and with the random generators' states that `save_weights`
leaves out (see `random_state_variables`).
"""

import contextlib
import errno
import gc
import glob
import math
import os
import re
import shutil
import sys
import tempfile

import keras
import numpy as np

from keras_normloss.training.faults import NonFiniteLoss, Preempted, RunFailed, non_finite_part
from keras_normloss.training.run_directory import read_json, sha256, write_json

FORMAT = 1
_NAME = re.compile(r"^ckpt-e(\d{5,})-s(\d{7,})\.json$")
# Every name a checkpoint's writing gives a file (`save`, `write_json`): what pruning and the
# final clean-up may delete, and nothing else. checkpoint/ may be a symbolic link to a folder
# that holds other files; they were once deleted (every *.weights.h5 without a sidecar).
_OWN_FILE = re.compile(r"^(tmp-)?ckpt-e\d{5,}-s\d{7,}\.(weights\.h5|json|json\.tmp)$")


class CheckpointsUnreadable(RunFailed):
    """The checkpoint directory holds checkpoints, and none of them loads."""


class CheckpointWriteFailed(RunFailed):
    """A checkpoint could not be written (a full disk, ...); the previous ones are intact."""


def random_state_variables(model):
    """The state variables of the model's random number generators.

    Dropout (and Keras's random augmentation layers) draw from a
    `keras.random.SeedGenerator` whose state advances with every call.
    That state is a variable of the model, but `save_weights` does not
    store it (Keras 3.15), so a run resumed from weights alone draws other
    dropout masks than the uninterrupted run. The input pipeline needs no
    state: its randomness is a function of (seed, epoch, position).

    Returns:
        The state variables, in the order of the model's layers.
    """
    states = {}
    for layer in model._flatten_layers(include_self=True):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                states.setdefault(id(value.state), value.state)
    return list(states.values())


def sync_model_state(model):
    """Puts the state that JAX's `fit` holds apart back into the model's variables.

    On JAX, `fit` runs a stateless step: between the epoch's first step and its end, the
    current weights, optimizer and random generator states live in arrays of the trainer's own,
    and the model's variables are emptied (Keras 3.15, `JAXTrainer._purge_model_variables`).
    Reading an emptied variable gives no error: it returns its *initializer's* value, so a
    mid-epoch checkpoint written from it would hold freshly initialised weights. Keras syncs
    when a callback reads `self.model` (3.15; newer releases name the method `state_sync`), and
    this makes it explicit where a checkpoint is written. Elsewhere (TensorFlow) it does
    nothing.

    Args:
        model: a Keras model.

    Example:

    ```python
    sync_model_state(model)  # then model.save_weights(...) holds this step's weights
    ```
    """
    sync = getattr(model, "state_sync", None) or getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def checkpoint_name(epoch, step):
    """The stem of the checkpoint at (epoch, step): `ckpt-eEEEEE-sKKKKKKK`."""
    return f"ckpt-e{epoch:05d}-s{step:07d}"


def _fsync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove(path):
    if os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def _quiet_h5py_write_failures():
    """Silences h5py's "Exception ignored" tracebacks of a failed write inside the block.

    When HDF5 cannot write (a full disk), h5py raises OSError (errno 28), and as the failed
    file's objects are freed it also prints "Exception ignored in
    h5py._objects.ObjectID.__dealloc__ ... RuntimeError: Can't decrement id ref count (file
    write failed ... No space left on device)" tracebacks on stderr (h5py 3, seen with a full
    tmpfs). They say nothing more than our one-line message. Other unraisable errors pass.
    """
    hook = sys.unraisablehook

    def filtered(unraisable):
        if not (
            isinstance(unraisable.exc_value, RuntimeError)
            and "file write failed" in str(unraisable.exc_value)
        ):
            hook(unraisable)

    sys.unraisablehook = filtered
    try:
        yield
    finally:
        sys.unraisablehook = hook


def _estimated_bytes(model):
    """About the size of the model's weights file: its variables, the optimizer's, and HDF5's
    metadata (measured: 1.3 KiB per variable for ResNet-20, 1.8 KiB for a tiny model)."""
    variables = list(model.weights)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    data = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)
    return data + 2048 * len(variables) + 4096


class CheckpointStore:
    """The `checkpoint/` directory of a run (see the module docstring).

    Args:
        directory: the checkpoint directory.
        keep: how many checkpoints to keep (the newest).
        write: False on the workers of a multi-worker run that are not the
            chief: they take part in saving (reading some variables is a
            collective operation) but write to a scratch directory, and
            they move nothing on resume.
    """

    def __init__(self, directory, keep=2, write=True, metrics=True):
        self.directory = directory
        self.keep = keep
        self.write = write
        # Whether checkpoints hold the training metrics' running sums (see ResumedMetrics): not
        # over several tf.distribute replicas, where reading one in the chief alone is a
        # collective the other workers never join (a multi-worker run then stopped).
        self.metrics = metrics
        self.metric_state = None  # the restored checkpoint's training-metric sums, if it has them

    def _sidecars(self):
        """Sidecar names, newest position first."""
        found = []
        for path in glob.glob(os.path.join(self.directory, "ckpt-*.json")):
            match = _NAME.match(os.path.basename(path))
            if match:
                found.append(((int(match[1]), int(match[2])), os.path.basename(path)))
        return [name for _, name in sorted(found, reverse=True)]

    def latest(self):
        """The newest complete checkpoint's sidecar name, or None (nothing verified)."""
        names = self._sidecars()
        return names[0] if names else None

    def save(self, model, epoch, step):
        """Writes the checkpoint at (epoch, step), then keeps the newest `keep`.

        Raises:
            NonFiniteLoss: if a weight, or the penalty computed from the weights, is NaN or
                infinite (nothing is written).
            CheckpointWriteFailed: if a file cannot be written; what was
                written of this checkpoint is removed, older ones are intact.
        """
        sync_model_state(model)  # on JAX: this step's weights, not the emptied variables'
        what = non_finite_part(model)
        if what is not None:
            # (epoch, 0) is saved at the end of epoch `epoch - 1` (0-based).
            if step:
                raise NonFiniteLoss(what, epoch, step)
            raise NonFiniteLoss(what, epoch - 1)
        if not self.write:
            with tempfile.TemporaryDirectory() as scratch:
                model.save_weights(os.path.join(scratch, "ckpt.weights.h5"))
            return
        stem = checkpoint_name(epoch, step)
        weights = os.path.join(self.directory, f"{stem}.weights.h5")
        sidecar = os.path.join(self.directory, f"{stem}.json")
        tmp = os.path.join(self.directory, f"tmp-{stem}.weights.h5")
        with _quiet_h5py_write_failures():
            reason = self._write(model, epoch, step, tmp, weights, sidecar)
            if reason is not None:
                gc.collect()  # closes h5py's handle of the half-written file: its space comes back
        if reason is not None:
            _remove(tmp)
            if not os.path.exists(sidecar):
                _remove(weights)
            previous = self.latest()
            kept = (
                f"the previous checkpoint {previous} is intact"
                if previous
                else "no earlier checkpoint exists"
            )
            raise CheckpointWriteFailed(
                f"could not write checkpoint {stem} in {self.directory}: {reason}; {kept}. "
                "Free space (or fix the filesystem) and run the same command to resume"
            )
        self._prune(stem)

    def _write(self, model, epoch, step, tmp, weights, sidecar):
        """Writes the weights, then the sidecar. Returns None, or why it failed."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            needed, free = _estimated_bytes(model), shutil.disk_usage(self.directory).free
            if free < needed:
                # Checked first because HDF5 does not survive a full disk: h5py raises OSError
                # (errno 28), but the half-written file's objects stay in HDF5's tables, and
                # the process dies with SIGSEGV when it exits (exit status 139; h5py 3, HDF5
                # seen on a full 64 KiB tmpfs). A disk that fills during the write (another
                # process) is still caught below, with that crash at exit.
                return (
                    f"no space left on device (it needs about {needed / 1e6:.1f} MB, "
                    f"{free / 1e6:.1f} MB are free)"
                )
            model.save_weights(tmp)
            _fsync(tmp)
            os.replace(tmp, weights)
            write_json(
                sidecar,
                {
                    "format": FORMAT,
                    "epoch": epoch,
                    "step": step,
                    "weights": os.path.basename(weights),
                    "weights_bytes": os.path.getsize(weights),
                    "weights_sha256": sha256(weights),
                    "random_state": [np.asarray(v).tolist() for v in random_state_variables(model)],
                    # The running sums of the epoch's training metrics: see ResumedMetrics.
                    "metrics": [np.asarray(v).tolist() for v in model.metrics_variables]
                    if self.metrics
                    else None,
                },
            )
        except OSError as error:
            # Only text leaves: the error's traceback holds h5py's handle of the half-written
            # file, which must be freed to close it and give its space back.
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                return "no space left on device"
            return error.strerror or (str(error).splitlines() or ["an OSError"])[0]
        return None

    def _prune(self, current):
        for old in self._sidecars()[self.keep :]:
            stem = old[: -len(".json")]
            _remove(os.path.join(self.directory, old))  # first: no sidecar, no checkpoint
            _remove(os.path.join(self.directory, f"{stem}.weights.h5"))
        complete = {name[: -len(".json")] for name in self._sidecars()}
        for name in self._own_files(self.directory):
            if name.endswith(".weights.h5"):
                stem = name[: -len(".weights.h5")]
                if stem not in complete and stem != current:
                    # a weights file whose sidecar was never written, or a tmp- one
                    os.remove(os.path.join(self.directory, name))
            elif name.endswith(".json.tmp"):
                os.remove(os.path.join(self.directory, name))  # a sidecar cut short

    @staticmethod
    def _own_files(directory):
        """The names in `directory` that a checkpoint's writing gives (`_OWN_FILE`)."""
        if not os.path.isdir(directory):
            return []
        return sorted(n for n in os.listdir(directory) if _OWN_FILE.match(n))

    def _load(self, name, model):
        """Loads the checkpoint `name` into `model` if it is sound.

        Returns:
            ((epoch, step), None) if it loaded, else (None, why not).
        """
        try:
            meta = read_json(os.path.join(self.directory, name))
        except ValueError as error:
            return None, f"its sidecar is not valid JSON ({error})"
        except OSError as error:
            return None, f"its sidecar cannot be read ({error.strerror or error})"
        keys = ("epoch", "step", "weights", "weights_bytes", "weights_sha256", "random_state")
        if not isinstance(meta, dict) or any(k not in meta for k in keys):
            return None, "its sidecar lacks fields"
        weights = os.path.join(self.directory, str(meta["weights"]))
        if not os.path.exists(weights):
            return None, f"its weights file {meta['weights']} is missing"
        size = os.path.getsize(weights)
        if size != meta["weights_bytes"]:
            return (
                None,
                f"its weights file has {size} bytes, not {meta['weights_bytes']} (cut short?)",
            )
        if sha256(weights) != meta["weights_sha256"]:
            return None, "its weights file is damaged (SHA-256 differs)"
        states = random_state_variables(model)
        if len(states) != len(meta["random_state"]):
            return None, (
                f"it holds {len(meta['random_state'])} random generator states, the model has "
                f"{len(states)} (written by another version of keras-normloss)"
            )
        try:
            model.load_weights(weights)
        except Exception as error:  # h5py's OSError, Keras's ValueError: whatever does not load
            first_line = (str(error).splitlines() or [""])[0]
            return None, f"its weights do not load ({type(error).__name__}: {first_line})"
        what = non_finite_part(model)
        if what is not None:
            # Written by a version that did not check, or damaged in a way its SHA-256 cannot
            # tell: resuming from it would only carry the NaN on.
            return None, f"its {what} are not finite (NaN or infinity: a diverged run)"
        for variable, value in zip(states, meta["random_state"]):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        self.metric_state = meta.get("metrics")  # absent from older checkpoints
        return (int(meta["epoch"]), int(meta["step"])), None

    def restore(self, model, report=print):
        """Loads the newest checkpoint that loads into `model` (built, optimizer built).

        Args:
            model: the compiled model, its optimizer's variables created.
            report: called with a one-line message for each skipped checkpoint.

        Returns:
            The checkpoint's (epoch, step), or None if there is no checkpoint.

        Raises:
            CheckpointsUnreadable: if there are checkpoints and none loads
                (nothing is deleted or moved).
        """
        names = self._sidecars()
        if not names:
            if os.path.exists(os.path.join(self.directory, "state.json")):
                raise CheckpointsUnreadable(
                    f"{self.directory} holds a checkpoint in the format of an earlier "
                    "keras-normloss (state.json), which this one does not resume: start a new "
                    "--output (nothing was deleted)"
                )
            return None
        skipped = []
        for name in names:
            position, reason = self._load(name, model)
            if position is not None:
                for stem, why in skipped:
                    report(f"skipped checkpoint {stem}: {why}{self._set_aside(stem)}")
                return position
            skipped.append((name[: -len(".json")], reason))
        reasons = "; ".join(f"{stem}: {why}" for stem, why in skipped)
        raise CheckpointsUnreadable(
            f"no checkpoint in {self.directory} loads ({reasons}); nothing was deleted: "
            "restore a good copy of the directory, or start a new --output"
        )

    def _set_aside(self, stem):
        if not self.write:
            return ""
        aside = os.path.join(self.directory, "skipped")
        os.makedirs(aside, exist_ok=True)
        for suffix in (".json", ".weights.h5"):
            path = os.path.join(self.directory, stem + suffix)
            if os.path.exists(path):
                shutil.move(path, os.path.join(aside, stem + suffix))
        return f"; moved to {aside}"

    def remove_all(self):
        """Removes the checkpoints (the run is finished): the files this store writes, in the
        directory and in its `skipped/`, then those folders if that left them empty. Nothing
        else is deleted, also where checkpoint/ is a symbolic link to another folder (the link
        itself goes; the folder it points to stays)."""
        for folder in (os.path.join(self.directory, "skipped"), self.directory):
            for name in self._own_files(folder):
                _remove(os.path.join(folder, name))
            if os.path.islink(folder):
                os.unlink(folder)
            elif os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)


class Checkpointer(keras.callbacks.Callback):
    """Saves a checkpoint every epoch, every `every` steps, and when asked to stop.

    When `stop` (a `faults.StopRequest`) is raised (SIGTERM, SIGINT), it saves at the
    end of the current step and raises `faults.Preempted`, which ends `fit`
    before validation and the epoch's end; on the epoch's last step it lets
    the epoch finish first, so that the checkpoint is the epoch's.

    Args:
        store: a `CheckpointStore`.
        steps_per_epoch: steps in a full epoch.
        every: also save every this many steps (global), or None.
        stop: a `faults.StopRequest`, or None.
    """

    def __init__(self, store, steps_per_epoch, every=None, stop=None):
        super().__init__()
        self.store = store
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.stop = stop
        self.epoch = 0
        self.step_offset = 0

    def on_train_begin(self, logs=None):
        if self.stop is not None:
            self.stop.raise_if_requested()  # from now on a signal waits for the step's checkpoint

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_offset + batch + 1
        if step >= self.steps_per_epoch:
            return  # the epoch's end saves
        global_step = self.epoch * self.steps_per_epoch + step
        stopping = self.stop is not None and self.stop.requested
        if stopping or (self.every and global_step % self.every == 0):
            self.store.save(self.model, self.epoch, step)
        if stopping:
            raise Preempted(self.epoch, step, self.stop.signum)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        self.store.save(self.model, epoch + 1, 0)
        if self.stop is not None and self.stop.requested:
            raise Preempted(epoch + 1, 0, self.stop.signum)


class ResumedMetrics(keras.callbacks.Callback):
    """Puts back the running sums of the training metrics (loss, cross-entropy, accuracy) at
    the start of an epoch resumed mid-way, so that its row of metrics.csv averages all of the
    epoch's steps, as an uninterrupted run's does, and not only those after the resume.

    Keras resets the metrics just before `on_epoch_begin` and reads them into the step's
    state just after it, on TensorFlow and on JAX alike. Values whose number or shapes do not
    match the model's metric variables (a checkpoint of another version) are left alone.

    Args:
        values: the checkpoint's `metrics` (`CheckpointStore.metric_state`), or None.
    """

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_begin(self, epoch, logs=None):
        values, self.values = self.values, None  # the resumed epoch only
        variables = self.model.metrics_variables
        if values is None or len(values) != len(variables):
            return
        arrays = [np.asarray(v, dtype=w.dtype) for v, w in zip(values, variables)]
        if all(a.shape == tuple(w.shape) for a, w in zip(arrays, variables)):
            for variable, array in zip(variables, arrays):
                variable.assign(array)
