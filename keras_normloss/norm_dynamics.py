"""A model's kernels as channel matrices, and the statistics of one optimizer step on them.

What the callbacks (`keras_normloss.callbacks`) measure, in NumPy on the host: for every output
channel c of every supported kernel (the axes are `keras_normloss.norms`'), its norm ‖w_c‖; and
between the weights before and after one step, the **angular update** (the angle between w_c and
w_c', as epfml/REQ's logger measures it), the **relative update** ‖w_c' − w_c‖/‖w_c‖ and the
**effective learning rate** η/‖w_c‖², the step size a scale-invariant channel (one followed by
BatchNorm) feels. Statistics are per layer kind (`methods.layer_choice.LAYER_KINDS`: stem,
convolutions, shortcuts, Dense) and over every channel (`all`).

For a layer wrapped in a reparametrization (WN, ONI, OLM) the kernel is the one it computes
with (`effective_kernel()`), not its raw v.
"""

import dataclasses

import keras
import numpy as np

from keras_normloss import norms
from keras_normloss.layers.reparametrization import KernelReparametrization
from keras_normloss.methods import layer_choice

GROUPS = ("all", *layer_choice.LAYER_KINDS)
STEP_STATISTICS = (
    "channels",
    "norm_mean",
    "norm_std",
    "angular_update",
    "angular_update_rms",
    "relative_update",
    "effective_lr",
)


@dataclasses.dataclass(frozen=True)
class ChannelMatrix:
    """One kernel as a (channels, fan-in) float64 matrix: row c is w_c.

    Attributes:
        path: the kernel variable's path.
        kind: its layer's kind, one of `layer_choice.LAYER_KINDS`.
        rows: the matrix.
    """

    path: str
    kind: str
    rows: np.ndarray


def channel_rows(kernel, axes):
    """A kernel as a (channels, fan-in) NumPy matrix, channels in the kernel's own order.

    Args:
        kernel: an array or variable.
        axes: its reduction axes (`norms.KernelSlot.axes`): every axis that feeds one channel.

    Returns:
        A float64 array: row c holds channel c's weights (depthwise kernels: in × multiplier
        rows).

    Example:

    ```python
    channel_rows(np.ones((3, 3, 4, 8)), (0, 1, 2)).shape  # (8, 36)
    ```
    """
    values = np.asarray(keras.ops.convert_to_numpy(kernel), dtype=np.float64)
    kept = [a for a in range(values.ndim) if a not in axes]
    values = np.transpose(values, (*kept, *axes))
    channels = int(np.prod([values.shape[i] for i in range(len(kept))]))
    return values.reshape(channels, -1)


def kernel_matrices(model):
    """Every supported kernel of a model as a `ChannelMatrix` (a copy, in float64).

    Args:
        model: a built Keras model or layer.

    Returns:
        A list of `ChannelMatrix`, in `norms.model_kernels` order; empty for a model without
        supported kernels.
    """
    wrappers = {
        id(layer.layer): layer
        for layer in model._flatten_layers(include_self=True)
        if isinstance(layer, KernelReparametrization)
    }
    kind_of = layer_choice.layer_kind_of(model)
    matrices = []
    for slot in norms.model_kernels(model):
        if slot.variable is None:
            continue
        wrapper = wrappers.get(id(slot.layer))
        kernel = slot.variable if wrapper is None else wrapper.effective_kernel()
        matrices.append(
            ChannelMatrix(slot.variable.path, kind_of(slot.layer), channel_rows(kernel, slot.axes))
        )
    return matrices


def angles(before, after):
    """The angle, in radians, between each row of `before` and the same row of `after`.

    Computed as `2·atan2(‖â − b̂‖, ‖â + b̂‖)` of the unit rows: exact to rounding at every
    angle, where `arccos` of the cosine loses the small angles of one step (at 1e-4 rad the
    cosine differs from 1 by 5e-9, below float32's resolution). A row that is zero before or
    after has no direction: its angle is NaN (the statistics leave it out).

    Args:
        before, after: (channels, fan-in) matrices, row c the channel's weights.

    Returns:
        The (channels,) array of angles.

    Example:

    ```python
    angles(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]]))  # array([0.78539816]): π/4
    ```
    """
    a = _unit_rows(before)
    b = _unit_rows(after)
    angle = 2.0 * np.arctan2(np.linalg.norm(a - b, axis=1), np.linalg.norm(a + b, axis=1))
    zero = ~(np.any(a != 0, axis=1) & np.any(b != 0, axis=1))
    return np.where(zero, np.nan, angle)


def _unit_rows(rows):
    rows = np.asarray(rows, dtype=np.float64)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norm, out=np.zeros_like(rows), where=norm > 0)


def step_statistics(before, after, learning_rate):
    """Per-group statistics of one optimizer step, from the kernels before and after it.

    Args:
        before, after: `kernel_matrices(model)` just before and just after the step.
        learning_rate: the step's learning rate η.

    Returns:
        A dict `group -> {statistic: value}` over `GROUPS` present in the model (`all`
        first), with `STEP_STATISTICS`: `channels` (how many), `norm_mean` and `norm_std` of
        ‖w_c‖ after the step, `angular_update` (mean over channels of the angle turned, in
        radians) and `angular_update_rms` (its root mean square: what the equilibrium
        formulas of `methods.norm_theory` predict), `relative_update` (mean of
        ‖Δw_c‖/‖w_c‖) and `effective_lr` (mean of η/‖w_c‖², at the norm the step was taken
        from: the step size a scale-invariant channel feels under SGD; under Adam, whose step
        does not scale with the gradient, it feels η/‖w_c‖). Zero channels are left out of
        the angle and the last two; a group of zero channels has NaN there.

    Example:

    ```python
    before = kernel_matrices(model)
    model.train_on_batch(x, y)
    step_statistics(before, kernel_matrices(model), 0.1)["conv"]["angular_update"]
    ```
    """
    per_channel = {}
    for old, new in zip(before, after, strict=True):
        old_norm = np.linalg.norm(old.rows, axis=1)
        safe = np.where(old_norm > 0, old_norm, np.nan)
        values = per_channel.setdefault(old.kind, [])
        values.append(
            np.stack(
                [
                    np.linalg.norm(new.rows, axis=1),
                    angles(old.rows, new.rows),
                    np.linalg.norm(new.rows - old.rows, axis=1) / safe,
                    float(learning_rate) / safe**2,
                ]
            )
        )
    columns = {kind: np.concatenate(parts, axis=1) for kind, parts in per_channel.items()}
    if columns:
        columns = {"all": np.concatenate(list(columns.values()), axis=1), **columns}
    return {group: _summary(columns[group]) for group in GROUPS if group in columns}


def _summary(column):
    norm, angle, relative, effective = column
    return {
        "channels": int(norm.size),
        "norm_mean": float(norm.mean()),
        "norm_std": float(norm.std()),
        # Channels that are zero (collapsed) have no angle nor effective learning rate: left out;
        # NaN when every channel of the group is.
        "angular_update": _nan_mean(angle),
        "angular_update_rms": float(np.sqrt(_nan_mean(angle**2))),
        "relative_update": _nan_mean(relative),
        "effective_lr": _nan_mean(effective),
    }


def _nan_mean(values):
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
