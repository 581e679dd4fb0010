"""Weight rescaling (WRS): the hard projection that Norm Loss softens."""

import keras
from keras import ops

from keras_normloss import norms


@keras.saving.register_keras_serializable(package="keras_normloss")
class WeightRescaling(keras.constraints.Constraint):
    """Rescales every output channel's weight vector to unit norm.

    Weight rescaling (Liu et al., "Weight Rescaling: Effective and Robust
    Regularization for Deep Neural Networks with Batch Normalization", arXiv
    2102.03497): after each optimizer step, `w_c <- w_c / ||w_c||`, a
    projection onto the oblique manifold, where `NormLoss` only pulls toward
    it. Keras optimizers apply a variable's constraint after each update.

    Unlike `keras.constraints.UnitNorm()`, whose default `axis=0` is right for
    Dense kernels only, the default here is every axis but the last, and
    `keras_normloss.attach` picks the right axes for each layer kind. An
    all-zero channel stays zero. 16-bit kernels are rescaled in float32 and
    cast back.

    Args:
        axis: the axes that make up one output channel's weight vector; as in
            `NormLoss`.

    Raises:
        ValueError: if `axis` is not None, an int or a tuple of distinct ints;
            when called, if an axis is out of range for the kernel.

    Example:

    ```python
    layer = keras.layers.Conv2D(64, 3, kernel_constraint=WeightRescaling())
    ```
    """

    def __init__(self, axis=None):
        self.axis = norms.normalize_axis(axis)

    def __call__(self, w):
        w = ops.convert_to_tensor(w)
        dtype = w.dtype
        scaled = ops.cast(w, norms.compute_dtype(dtype)) / norms.channel_norms(
            w, self.axis, keepdims=True
        )
        return ops.cast(scaled, dtype)

    def get_config(self):
        return {"axis": None if self.axis is None else list(self.axis)}

    def __repr__(self):
        return f"WeightRescaling(axis={self.axis!r})"


class EpochProjection(keras.callbacks.Callback):
    """Projects chosen kernels to unit channel norms at the end of every epoch.

    PBWN's "NP-Epoch" variant (Huang et al., arXiv 1710.02338; `old_r_PN` in
    the reference code, which calls `updateWeight()` after each epoch): the
    same projection as `WeightRescaling`, applied once per epoch instead of
    after every step, and once before the first step.

    Args:
        variables: the kernel variables to project.
        axes: for each variable, the axes that make up one output channel
            (see `keras_normloss.output_channel_axes`).

    Raises:
        ValueError: if `variables` and `axes` differ in length.

    Example:

    ```python
    slots = keras_normloss.norms.model_kernels(model)
    model.fit(x, y, epochs=10, callbacks=[
        EpochProjection([s.variable for s in slots], [s.axes for s in slots])])
    ```
    """

    def __init__(self, variables, axes):
        super().__init__()
        if len(variables) != len(axes):
            raise ValueError(
                "Invalid value for argument `axes`: expected one entry per variable "
                f"({len(variables)}). Received: {len(axes)} entries"
            )
        self.pairs = [(v, WeightRescaling(a)) for v, a in zip(variables, axes)]

    def _project(self):
        for variable, rescale in self.pairs:
            variable.assign(rescale(variable))

    def on_train_begin(self, logs=None):
        # Only at the very start: a resumed run's weights are those of an
        # epoch's end (projected) or of a step inside an epoch (not, and must
        # stay so to continue the uninterrupted run exactly).
        if int(self.model.optimizer.iterations) == 0:
            self._project()

    def on_epoch_end(self, epoch, logs=None):
        self._project()
