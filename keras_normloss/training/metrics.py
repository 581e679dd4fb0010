"""What a run logs each epoch: the extra log entries, and `metrics.csv` (written and read).

TensorBoard's scalars are Keras's own callback; the channel-norm statistics come from
`keras_normloss.callbacks.NormMonitor`.
"""

import csv
import os
import time

import keras
import numpy as np

from keras_normloss.callbacks import keep_rows_up_to
from keras_normloss.training.faults import RunFilesDamaged


class MetricsIncomplete(RunFilesDamaged):
    """metrics.csv lacks epochs that the checkpoint being resumed has done (exit status 1)."""


METRIC_COLUMNS = (
    "epoch",
    "loss",
    "cross_entropy",
    "regularization_loss",
    "accuracy",
    "error",
    "test_loss",
    "test_cross_entropy",
    "test_accuracy",
    "test_error",
    "validation_loss",
    "validation_cross_entropy",
    "validation_accuracy",
    "validation_error",
    "learning_rate",
    "norm_mean",
    "norm_std",
    "norm_min",
    "norm_max",
    "oblique_distance",
    "epoch_seconds",
    "dataset",
)


class EpochExtras(keras.callbacks.Callback):
    """Adds learning rate, penalty, errors and epoch time to the logs.

    Args:
        epoch_learning_rate: `epoch -> the learning rate of the epoch's first step`, or None
            for the optimizer's at the epoch's beginning. With it, an epoch resumed mid-way
            logs its own rate, not the one at the step it was resumed at.
    """

    def __init__(self, epoch_learning_rate=None):
        super().__init__()
        self.epoch_learning_rate = epoch_learning_rate

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        if self.epoch_learning_rate is not None:
            self._lr = float(self.epoch_learning_rate(epoch))
        else:
            self._lr = float(np.asarray(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        losses = self.model.losses
        logs["regularization_loss"] = float(sum(float(np.asarray(l)) for l in losses))
        logs["learning_rate"] = self._lr
        if "accuracy" in logs:
            logs["error"] = 1.0 - float(logs["accuracy"])
        logs["epoch_seconds"] = time.perf_counter() - self._start


class HeldOutEvaluation(keras.callbacks.Callback):
    """Evaluates a split at each epoch's end: `{prefix}_loss`, `{prefix}_cross_entropy`,
    `{prefix}_accuracy` and `{prefix}_error` in the logs.

    `train` evaluates both the test split (`prefix="test"`) and the images held out of the
    training split (`"validation"`) this way, each under its own name, rather than passing the
    test split as `fit`'s `validation_data`: Keras would show it as `val_*` in the progress bar,
    and a user tuning on "val" would have tuned on test.

    Args:
        dataset: the batches (`Pipelines.test`, `Pipelines.validation`).
        steps: the number of batches.
        callbacks: callbacks for `evaluate` (the devices' own: `distribution.callbacks()`).
        prefix: the logs' prefix, `"test"` or `"validation"`.

    Example:

    ```python
    model.fit(pipelines.train(), callbacks=[HeldOutEvaluation(pipelines.test, steps, prefix="test"),
                                            HeldOutEvaluation(pipelines.validation, steps)])
    ```
    """

    def __init__(self, dataset, steps, callbacks=(), prefix="validation"):
        super().__init__()
        self.dataset = dataset
        self.steps = steps
        self.callbacks = list(callbacks)
        self.prefix = prefix

    def on_epoch_end(self, epoch, logs=None):
        scores = self.model.evaluate(
            self.dataset, steps=self.steps, verbose=0, return_dict=True, callbacks=self.callbacks
        )
        for key in ("loss", "cross_entropy", "accuracy"):
            logs[f"{self.prefix}_{key}"] = float(scores[key])
        logs[f"{self.prefix}_error"] = 1.0 - logs[f"{self.prefix}_accuracy"]


class MetricsCSV(keras.callbacks.Callback):
    """metrics.csv: fixed columns, one fsynced row per epoch, 1-based.

    Resuming after `first_epoch` epochs, the file must hold a complete row for each of them
    (`check_metrics`); the rows of later epochs, which the run redoes, are dropped.
    """

    def __init__(self, path, dataset, first_epoch):
        super().__init__()
        self.path = path
        self.dataset = dataset
        check_metrics(path, first_epoch)
        truncate_metrics(path, first_epoch)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "dataset": self.dataset}
        for key, value in logs.items():
            if key in METRIC_COLUMNS:
                row[key] = f"{float(value):.6g}"
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def _epoch(row):
    try:
        return int(row["epoch"])
    except (TypeError, ValueError):
        return None


def _complete_rows(path):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if _epoch(r) is not None and None not in r.values()]


def check_metrics(path, completed_epochs):
    """Raises `MetricsIncomplete` unless metrics.csv holds a complete row for each of the
    epochs 1..completed_epochs that the checkpoint being resumed has done.

    Without them the finished run's metrics.csv and results.json would silently lack epochs
    (its best epoch picked among the rest, its epoch count short); they cannot be recomputed
    from the checkpoint, so the run stops and changes nothing.
    """
    if not completed_epochs:
        return
    try:
        found = {_epoch(r) for r in _complete_rows(path)} if os.path.exists(path) else set()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        found, why = set(), f"cannot be read ({error})"
    else:
        why = "is missing" if not os.path.exists(path) else None
    missing = [e for e in range(1, completed_epochs + 1) if e not in found]
    if missing:
        epochs = _epoch_list(missing)
        raise MetricsIncomplete(
            f"{path} {why or 'lacks the rows of ' + epochs}, which the checkpoint being resumed "
            f"has done ({completed_epochs} {_plural(completed_epochs, 'epoch')}); resuming "
            "would leave the run without them. Nothing was changed: restore metrics.csv from a "
            "copy, or start the run again in a new --output"
        )


def _plural(n, word):
    return word if n == 1 else word + "s"


def _epoch_list(epochs):
    shown = ", ".join(str(e) for e in epochs[:5]) + (", ..." if len(epochs) > 5 else "")
    return f"{_plural(len(epochs), 'epoch')} {shown}"


def truncate_metrics(path, completed_epochs):
    """Keeps only rows of epochs <= completed_epochs (a resumed run redoes the rest).

    A row cut short (a full disk, a crash mid-write) has no epoch number, or
    one of an epoch the resumed run redoes; either way it goes.
    """
    keep_rows_up_to(path, METRIC_COLUMNS, "epoch", completed_epochs)


def read_metrics(run_dir):
    """Returns metrics.csv of a run as a list of dicts of floats (dataset as str)."""
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        return [
            {
                k: (v if k == "dataset" else float(v) if v not in ("", None) else float("nan"))
                for k, v in row.items()
            }
            for row in csv.DictReader(f)
        ]
