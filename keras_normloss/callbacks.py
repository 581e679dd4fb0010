"""NormMonitor: how far a model's kernels are from the oblique manifold."""

import os

import keras
import numpy as np

from keras_normloss import norms, reparam

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
    # A reparametrized layer's own kernel is the raw v; the kernel it computes with is the
    # wrapper's effective kernel, and that is the one whose norms mean something.
    wrappers = {
        id(layer.layer): layer
        for layer in model._flatten_layers(include_self=True)
        if isinstance(layer, reparam.KernelReparametrization)
    }
    for slot in norms.model_kernels(model):
        if slot.variable is None:
            continue
        wrapper = wrappers.get(id(slot.layer))
        kernel = slot.variable if wrapper is None else wrapper.effective_kernel()
        values = np.asarray(
            keras.ops.convert_to_numpy(norms.channel_norms(kernel, slot.axes))
        ).reshape(-1)
        per_kernel[slot.variable.path] = {**_stats(values), "norms": values}
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
