"""How a run stops before its end, cleanly: the reasons, their exit statuses, SIGTERM, NaN.

Exit statuses of `keras-normloss train` (and of each run of `sweep`):

    0    the run is finished (or was already)
    1    the run failed (`RunFailed`): a non-finite loss or weights, no checkpoint that loads,
         a checkpoint or output that cannot be written (a full disk). Nothing that was there is
         lost; the message says what to do.
    2    bad input (`keras_normloss.cli.UsageError`): a bad option, an --output that is a file,
         cannot be written or holds another run, a --data-dir that does not exist, a dataset
         not prepared, a precision or XLA setting this machine cannot run.
    143  stopped by SIGTERM after writing a checkpoint (`Preempted`); the same command resumes.
         128 + 15 is what a shell reports for a process killed by SIGTERM, so schedulers and
         scripts that read it as "terminated, may be restarted" keep doing so.

Each is reported in one line on stderr.
"""

import contextlib
import math
import signal
import threading

import keras


class RunStopped(RuntimeError):
    """A run stopped before its end; the message is one line, `exit_status` the process's."""

    exit_status = 1


class RunFailed(RunStopped):
    """The run cannot go on as it is (exit status 1)."""


class NonFiniteLoss(RunFailed):
    """The loss or the weights became NaN or infinite; no checkpoint of them was written."""

    def __init__(self, what, epoch, step=None):
        where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch + 1}"
        super().__init__(
            f"the {what} became non-finite (NaN or infinity) at {where}; "
            "training stopped at once and no checkpoint of it was written: the last good "
            "checkpoint is kept. Lower --lr (in a new --output) or look at the data"
        )
        self.epoch, self.step = epoch, step


class Preempted(RunStopped):
    """SIGTERM arrived; a checkpoint was written at `(epoch, step)` (exit status 143)."""

    exit_status = 128 + signal.SIGTERM

    def __init__(self, epoch, step):
        where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
        super().__init__(
            f"stopped by SIGTERM; a checkpoint was written at {where}: "
            "run the same command to resume"
        )
        self.epoch, self.step = epoch, step


class StopRequest:
    """A flag that SIGTERM raises; the checkpointer reads it after each step.

    Use `with request.on_sigterm():` around training: it installs the handler
    in the main thread (elsewhere Python cannot) and puts the previous one
    back afterwards.
    """

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        self.requested = True

    @contextlib.contextmanager
    def on_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self._handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises `NonFiniteLoss` at the end of the first step whose loss is not finite.

    `keras.callbacks.TerminateOnNaN` only sets `stop_training`: Keras then
    still runs validation and every `on_epoch_end`, where a checkpoint of the
    NaN weights would be written. Raising ends `fit` at once. It must come
    first in the callback list, so that no later callback sees the step.
    """

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.step_offset = 0  # steps of the epoch done before this `fit` (a resumed epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss("loss", self.epoch, self.step_offset + batch + 1)
