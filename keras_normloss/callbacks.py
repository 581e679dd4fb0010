"""Callbacks that watch the weight norms: NormMonitor (each epoch's channel norms) and NormDynamics
(what sampled optimizer steps do to them: angular updates, relative updates, effective learning
rates). Both read the kernels through `keras_normloss.norm_dynamics`."""

import csv
import os

import keras
import numpy as np

from keras_normloss import norm_dynamics

STAT_KEYS = ("norm_mean", "norm_std", "norm_min", "norm_max", "oblique_distance")


def kernel_norm_statistics(model):
    """Channel-norm statistics of every supported kernel of a model.

    Args:
        model: a Keras model or layer.

    Returns:
        `(overall, per_kernel)`: `overall` maps `norm_mean`, `norm_std`,
        `norm_min`, `norm_max` (of ‖w_c‖ over every output channel of every
        kernel) and `oblique_distance` (mean |‖w_c‖ − 1| over those channels)
        to floats; `per_kernel` maps each kernel's path to the same keys plus
        `norms`, the array of its channel norms. Both are empty for a model
        without supported kernels. For a layer wrapped in a
        `keras_normloss.methods` reparametrization wrapper (WN, ONI, OLM), the norms are those of
        the kernel it computes with (`effective_kernel()`), not of its raw v.

    Example:

    ```python
    overall, per_kernel = kernel_norm_statistics(model)
    overall["oblique_distance"]
    ```
    """
    per_kernel = {}
    for matrix in norm_dynamics.kernel_matrices(model):
        values = np.linalg.norm(matrix.rows, axis=1)
        per_kernel[matrix.path] = {**_stats(values), "norms": values}
    if not per_kernel:
        return {}, {}
    return _stats(np.concatenate([k["norms"] for k in per_kernel.values()])), per_kernel


def _stats(values):
    return {
        "norm_mean": float(values.mean()),
        "norm_std": float(values.std()),
        "norm_min": float(values.min()),
        "norm_max": float(values.max()),
        "oblique_distance": float(np.abs(values - 1.0).mean()),
    }


class NormMonitor(keras.callbacks.Callback):
    """Logs channel-norm statistics of every kernel at the end of each epoch.

    Adds `norm_mean`, `norm_std`, `norm_min`, `norm_max` and
    `oblique_distance` (over all output channels of all Conv/Dense-like
    kernels; see `kernel_norm_statistics`) to the epoch logs, so that
    `History`, `CSVLogger` and `TensorBoard` placed after it in the callback
    list record them. With `log_dir`, it also writes, per kernel, the same
    statistics as scalars and the channel norms as a histogram to
    TensorBoard (TensorFlow backend), under `log_dir/norms`.

    Args:
        log_dir: a TensorBoard log directory, or `None` for logs only.
        per_kernel_logs: also put every kernel's statistics in the epoch logs
            (`"<kernel path>/norm_mean"`, ...): many columns for deep models.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[NormMonitor(log_dir="runs/tb"),
                                          keras.callbacks.CSVLogger("log.csv")])
    ```
    """

    def __init__(self, log_dir=None, per_kernel_logs=False):
        super().__init__()
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.per_kernel_logs = per_kernel_logs
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        overall, per_kernel = kernel_norm_statistics(self.model)
        if logs is not None:
            logs.update(overall)
            if self.per_kernel_logs:
                for path, stats in per_kernel.items():
                    logs.update({f"{path}/{k}": stats[k] for k in STAT_KEYS})
        if self.log_dir is not None and per_kernel:
            self._write_summaries(epoch, overall, per_kernel)

    def _write_summaries(self, epoch, overall, per_kernel):
        import tensorflow as tf  # TensorBoard summaries need TensorFlow

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "norms"))
        with self._writer.as_default(step=epoch):
            for key, value in overall.items():
                tf.summary.scalar(f"all_kernels/{key}", value)
            for path, stats in per_kernel.items():
                for key in STAT_KEYS:
                    tf.summary.scalar(f"{path}/{key}", stats[key])
                tf.summary.histogram(f"{path}/channel_norms", stats["norms"])
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# Every 50 steps: about 2 % of the steps of a run, each sample two copies of the kernels to the
# host; benchmarks/overhead.py measures what that costs a ResNet-20 step.
DEFAULT_DYNAMICS_EVERY = 50
DYNAMICS_COLUMNS = ("step", "epoch", "learning_rate", "group", *norm_dynamics.STEP_STATISTICS)


class NormDynamics(keras.callbacks.Callback):
    """Measures what one optimizer step does to the channels, every `every` steps.

    At each sampled step it copies the kernels just before and just after the step and
    records, per layer kind (`stem`, `conv`, `shortcut`, `dense`) and over every channel
    (`all`), the statistics of `norm_dynamics.step_statistics`: the channels' mean norm and its
    spread, the angular update (radians: the mean, and the root mean square that the
    equilibrium theory of `keras_normloss.methods.norm_theory` predicts), the relative update
    ‖Δw_c‖/‖w_c‖ and the effective learning rate η/‖w_c‖². Sampled are the first step and
    every step whose count (the optimizer's iterations after it) is a multiple of `every`,
    as epfml/REQ's logger samples.

    Rows go to `rows` (a list of dicts with `DYNAMICS_COLUMNS`), to `csv_path` (appended and
    fsynced at each sample) and, with `log_dir`, to TensorBoard as `<group>/<statistic>`
    scalars under `log_dir/dynamics` (TensorFlow must be installed). When training starts,
    rows of the CSV whose step is beyond the optimizer's iterations are dropped: a run resumed
    from a checkpoint redoes those steps and writes them again, so the file ends as an
    uninterrupted run's would.

    Cost: two copies of the kernels to the host and a few NumPy reductions per sample
    (`benchmarks/overhead.py` prints it, timed alone). Between samples it does nothing, but
    like any callback with batch hooks it makes Keras hand each batch's logs to Python (no
    cost in `train`, whose progress bar and checkpoints have batch hooks already). Under JAX,
    reading the weights at a sample makes Keras write its training state back to the
    variables, which it otherwise does once per epoch. With `steps_per_execution` k > 1 a
    sample spans the k steps of one execution, and is taken at the first execution that
    reaches a multiple of `every`. The `step` column is the optimizer's iterations after the
    sample (under float16 loss scaling, a skipped step does not count).

    Args:
        every: the sampling interval in steps, a positive integer.
        csv_path: a CSV file to append the rows to, or `None`.
        log_dir: a TensorBoard log directory, or `None`.

    Example:

    ```python
    dynamics = NormDynamics(every=10, csv_path="dynamics.csv")
    model.fit(x, y, epochs=3, callbacks=[dynamics])
    [r["angular_update"] for r in dynamics.rows if r["group"] == "conv"]
    ```
    """

    def __init__(self, every=DEFAULT_DYNAMICS_EVERY, csv_path=None, log_dir=None):
        super().__init__()
        if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
            raise ValueError(
                "Invalid value for argument `every`: expected a positive integer. "
                f"Received: every={every!r}"
            )
        self.every = every
        self.csv_path = None if csv_path is None else os.fspath(csv_path)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.rows = []
        self._step = 0
        self._epoch = 0
        self._before = None
        self._writer = None

    def on_train_begin(self, logs=None):
        self._step = int(np.asarray(self.model.optimizer.iterations))
        if self.csv_path is not None:
            truncate_dynamics(self.csv_path, self._step)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def _execution(self):
        # Steps per batch hook: `steps_per_execution` (the trainer's, read without `self.model`,
        # which under JAX would sync the training state at every step).
        return getattr(self._model, "steps_per_execution", 1) or 1

    def _sampled(self, steps):
        # The first step, and each execution that reaches a multiple of `every`.
        return self._step == 0 or (self._step + steps) // self.every > self._step // self.every

    def on_train_batch_begin(self, batch, logs=None):
        if self._sampled(self._execution()):
            model = self.model  # under JAX this writes the training state to the variables
            self._learning_rate = float(np.asarray(model.optimizer.learning_rate))
            self._before = norm_dynamics.kernel_matrices(model)

    def on_train_batch_end(self, batch, logs=None):
        self._step += self._execution()
        if self._before is None:
            return
        model = self.model
        # Counted batches drift from the optimizer's count where steps are skipped (float16
        # loss scaling): the sampled row takes the optimizer's own.
        self._step = int(np.asarray(model.optimizer.iterations))
        after = norm_dynamics.kernel_matrices(model)
        statistics = norm_dynamics.step_statistics(self._before, after, self._learning_rate)
        self._before = None
        rows = [
            {
                "step": self._step,
                "epoch": self._epoch,
                "learning_rate": self._learning_rate,
                "group": group,
                **values,
            }
            for group, values in statistics.items()
        ]
        self.rows.extend(rows)
        if self.csv_path is not None:
            self._append(rows)
        if self.log_dir is not None:
            self._write_summaries(statistics)

    def _append(self, rows):
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=DYNAMICS_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
            f.flush()
            os.fsync(f.fileno())

    def _write_summaries(self, statistics):
        import tensorflow as tf  # TensorBoard summaries need TensorFlow

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "dynamics"))
        with self._writer.as_default(step=self._step):
            for group, values in statistics.items():
                for key, value in values.items():
                    tf.summary.scalar(f"{group}/{key}", value)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _cell(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def truncate_dynamics(path, step):
    """Keeps the rows of a dynamics CSV whose step is at most `step` (a resumed run redoes the
    rest); a row cut short by a crash goes too. Nothing happens if the file does not exist."""
    keep_rows_up_to(path, DYNAMICS_COLUMNS, "step", step)


def keep_rows_up_to(path, columns, column, last):
    """Rewrites a CSV log (`columns` its header), keeping the complete rows whose integer
    `column` is at most `last`: a resumed run redoes the others. A row cut short by a crash,
    or without a number there, goes too. Atomic (a temporary file renamed); nothing happens if
    the file does not exist."""
    if not os.path.exists(path):
        return

    def number(row):
        try:
            return int(row[column])
        except (TypeError, ValueError):
            return None

    with open(path, newline="") as f:
        kept = [
            r
            for r in csv.DictReader(f)
            if None not in r.values() and number(r) is not None and number(r) <= last
        ]
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)


_INTEGER = {"step": int, "epoch": int, "channels": int}


def read_dynamics(path):
    """A dynamics CSV as a list of dicts: `group` a string, `step`, `epoch` and `channels`
    integers, every other column a float."""
    with open(path, newline="") as f:
        return [
            {k: v if k == "group" else _INTEGER.get(k, float)(v) for k, v in row.items()}
            for row in csv.DictReader(f)
            if None not in row.values()
        ]
