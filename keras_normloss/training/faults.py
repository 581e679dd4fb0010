"""How a run stops before its end, cleanly: the reasons, their exit statuses, signals, divergence.

Exit statuses of `keras-normloss train` (and of each run of `sweep`):

    0    the run is finished (or was already)
    1    the run failed (`RunFailed`): the loss, the penalty or the weights became non-finite
         (the run diverged), no checkpoint loads, a run file is damaged (metrics.csv lacks an
         epoch, results.json or model.keras of a finished run do not read), a checkpoint or
         output cannot be written (a full disk). Nothing that was there is lost; the message
         says what to do.
    2    bad input (`keras_normloss.errors.UsageError`): a bad option, an --output that is a file,
         cannot be written or holds another run (or a sweep), a --data-dir that does not
         exist, a dataset not prepared, sizes that cannot fit the data or the memory, a
         precision, XLA or strategy setting this machine cannot run.
    130  stopped by SIGINT (Ctrl-C); during training after writing a checkpoint (`Preempted`),
         before it (`Interrupted`) at once, with nothing written. The same command resumes.
    143  the same for SIGTERM. 128 + the signal's number is what a shell reports for a process
         killed by that signal, so schedulers and scripts that read it as "terminated, may be
         restarted" keep doing so.

Each is reported in one line on stderr.
"""

import contextlib
import math
import signal
import threading

import keras
import numpy as np

SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}


class RunStopped(RuntimeError):
    """A run stopped before its end; the message is one line, `exit_status` the process's."""

    exit_status = 1


class RunFailed(RunStopped):
    """The run cannot go on as it is (exit status 1)."""


class NonFiniteLoss(RunFailed):
    """The loss, the penalty or the weights became NaN or infinite; no checkpoint of them was
    written (exit status 1).

    Args:
        what: "loss", "penalty", "weights" or "test loss".
        epoch: the 0-based epoch.
        step: the 1-based step of that epoch at which it was seen, or None for the epoch's end.
    """

    def __init__(self, what, epoch, step=None):
        self.what, self.epoch, self.step = what, epoch, step
        super().__init__(
            f"the {what} became non-finite (NaN or infinity) at {self.where}: the run diverged. "
            "Training stopped at once and no checkpoint of it was written (earlier ones are "
            "kept). Rerun with a smaller --lr (or --factor) in a new --output"
        )

    @property
    def where(self):
        if self.step:
            return f"epoch {self.epoch + 1}, step {self.step}"
        return f"the end of epoch {self.epoch + 1}"


class Diverged(RunFailed):
    """The run diverged in an earlier attempt (`diverged.json`); running the same settings
    again would diverge again (exit status 1)."""


class RunFilesDamaged(RunFailed):
    """A file of the run (results.json, model.keras, metrics.csv) is missing or damaged where
    the run needs it (exit status 1)."""


class Preempted(RunStopped):
    """SIGTERM or SIGINT arrived during training; a checkpoint was written at `(epoch, step)`
    (exit status 128 + the signal's number: 143, 130)."""

    def __init__(self, epoch, step, signum=signal.SIGTERM):
        where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
        super().__init__(
            f"stopped by {SIGNAL_NAMES[signum]}; a checkpoint was written at {where}: "
            "run the same command to resume"
        )
        self.epoch, self.step = epoch, step
        self.exit_status = 128 + signum


class Interrupted(RunStopped):
    """SIGTERM or SIGINT arrived before training began (reading the data, building the model):
    the run stops at once, with no checkpoint written (exit status 128 + the signal's number).
    Before a run starts, `keras_normloss.cli` handles the signals the same way."""

    def __init__(self, signum):
        super().__init__(
            f"stopped by {SIGNAL_NAMES[signum]} before training began (while preparing the "
            "data or the model); no checkpoint of this attempt was written: run the same "
            "command to start again"
        )
        self.exit_status = 128 + signum


class StopRequest:
    """What SIGTERM and SIGINT do to a run.

    Before training begins (`immediate` True) a signal raises `Interrupted` at once: there is
    nothing to save, and the data preparation of a large dataset can take minutes. During
    training (the checkpointer sets `immediate` to False) it only records the signal, and the
    checkpointer saves after the current step and raises `Preempted`.

    Use `with request.on_signals():` around the run: it installs the handlers in the main
    thread (elsewhere Python cannot) and puts the previous ones back afterwards.
    """

    def __init__(self):
        self.signum = None
        self.immediate = True

    @property
    def requested(self):
        return self.signum is not None

    def _handler(self, signum, frame):
        # Recorded first: an exception raised in a handler surfaces wherever the main thread is,
        # and some places swallow it (TensorFlow's autograph catches any error while it
        # converts a function, logs "Cause: ...", and goes on); the record still stops the run
        # when training begins (`raise_if_requested`).
        self.signum = self.signum or signum
        if self.immediate:
            raise Interrupted(signum)

    def raise_if_requested(self):
        """Raises `Interrupted` if a signal came before training began (its exception may have
        been swallowed), and from then on lets signals wait for the step's checkpoint."""
        self.immediate = False
        if self.requested:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def on_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handler) for s in SIGNAL_NAMES}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _finite(value):
    return bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))


def penalty(model):
    """The model's regularization penalty (the sum of `model.losses`), as a Python float."""
    return float(sum(float(np.asarray(loss)) for loss in model.losses))


def non_finite_part(model):
    """ "weights" if a weight is NaN or infinite, "penalty" if the penalty is (weights too large
    for their norms: 1e30 squared overflows float32), else None."""
    if not all(_finite(v) for v in model.weights):
        return "weights"
    if not math.isfinite(penalty(model)):
        return "penalty"
    return None


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLoss` as soon as the run diverges.

    After each step it reads the loss (which includes the penalty); at the epoch's end, before
    any other callback writes a metrics row or a checkpoint, it checks the weights and the
    penalty computed from them (the last step's update is in no loss yet) and the test loss.

    `keras.callbacks.TerminateOnNaN` only sets `stop_training`: Keras then still runs
    validation and every `on_epoch_end`, where a checkpoint of the NaN weights would be
    written. Raising ends `fit` at once. It must come first in the callback list, so that no
    later callback sees the step.

    Args:
        steps_per_epoch: the steps of a full epoch, to name the last one.
    """

    def __init__(self, steps_per_epoch=None):
        super().__init__()
        self.epoch = 0
        self.step_offset = 0  # steps of the epoch done before this `fit` (a resumed epoch)
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss("loss", self.epoch, self.step_offset + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        what = non_finite_part(self.model)
        if what is None and not math.isfinite(float((logs or {}).get("test_loss", 0.0))):
            what = "test loss"
        if what is not None:
            raise NonFiniteLoss(what, epoch, self.steps_per_epoch)
