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
    PBWN's "NP" (Huang et al., arXiv 1710.02338) is the same projection; its
    reference projects in each training forward pass, before the
    convolution (`module/spatial/cudnn_Spatial_PN_EI.lua` l.200-208 in
    github.com/huangleiBuaa/NormProjection), so its first step already uses
    unit-norm kernels; with a constraint the first step uses the initial
    kernels, and every later one projected kernels.

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
    """Projects chosen kernels to unit channel norms at the end of every epoch but the last.

    PBWN's "NP-Epoch" variant (Huang et al., arXiv 1710.02338): the same
    projection as `WeightRescaling`, applied once per epoch instead of after
    every step. As the reference (github.com/huangleiBuaa/NormProjection,
    `models/CIFAR/old_r_PN.lua`, every convolution a `cudnn.Spatial_PN`), it
    projects after every epoch but the last (`exp_Conv_CIFAR.lua` l.347-352)
    and not before the first. Not after the last: BatchNormalization's moving
    statistics were gathered with the unprojected kernels, so a projection
    there would change the trained model's inference function (measured on a
    small conv+BN model: validation loss 0.750 in the last epoch, 0.708 from
    `evaluate` after a final projection) and the model `fit` returns would not
    be the one validated. The last epoch is `total_epochs`, or, if it is
    None, `fit`'s `epochs`: give it when training is split over several `fit`
    calls (a resumed run, a loop of `fit(epochs=1)`), or the projection at the
    end of every call would be skipped.

    Args:
        variables: the kernel variables to project.
        axes: for each variable, the axes that make up one output channel
            (see `keras_normloss.output_channel_axes`).
        total_epochs: the run's number of epochs, or None for `fit`'s.

    Raises:
        ValueError: if `variables` and `axes` differ in length.

    Example:

    ```python
    slots = keras_normloss.norms.model_kernels(model)
    model.fit(x, y, epochs=10, callbacks=[
        EpochProjection([s.variable for s in slots], [s.axes for s in slots])])
    ```
    """

    def __init__(self, variables, axes, total_epochs=None):
        super().__init__()
        if total_epochs is not None and (
            isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1
        ):
            raise ValueError(
                "Invalid value for argument `total_epochs`: expected None or an int >= 1. "
                f"Received: total_epochs={total_epochs!r}"
            )
        self.total_epochs = total_epochs
        if len(variables) != len(axes):
            raise ValueError(
                "Invalid value for argument `axes`: expected one entry per variable "
                f"({len(variables)}). Received: {len(axes)} entries"
            )
        self.pairs = [(v, WeightRescaling(a)) for v, a in zip(variables, axes)]

    def _project(self):
        for variable, rescale in self.pairs:
            variable.assign(rescale(variable))

    def on_epoch_end(self, epoch, logs=None):
        total = self.total_epochs or self.params.get("epochs", epoch + 2)
        if epoch + 1 < total:
            self._project()
