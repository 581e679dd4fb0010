"""Norm Loss, the weight-decay baseline and the orthogonality penalties (SO, SRIP), as Keras regularizers."""

import math
import numbers

import keras
from keras import ops

from keras_normloss import norms


def validate_factor(value, name):
    """Returns `value` as a Python float, or raises a Keras-style ValueError.

    Accepts Python and NumPy real numbers that are finite and >= 0.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a non-negative "
            f"finite float. Received: {name}={value!r}"
        )
    return float(value)


@keras.saving.register_keras_serializable(package="keras_normloss")
class NormLoss(keras.regularizers.Regularizer):
    """Norm Loss: pulls every output channel's weight vector to unit norm.

    From Georgiou, Schmitt, Bäck, Chen and Lew, "Norm Loss: An efficient yet
    effective regularization method for deep neural networks", ICPR 2020
    (arXiv 2103.06583). For a kernel with output channels `c`:

        loss = factor * sum_c (1 - ||w_c||)**2
        d loss / d w = 2 * factor * w * (1 - 1 / ||w_c||)     (paper eq. 6)

    so it acts as weight decay on channels longer than 1 and as weight growth
    on channels shorter than 1, steering the kernel toward the oblique
    manifold (every channel of unit norm).

    The penalty is computed in float32 for 16-bit kernels (float16, bfloat16,
    mixed-precision policies) and returned as a float32 scalar; float64
    kernels stay in float64.

    At an all-zero channel the norm is undefined; the norm is computed as
    `sqrt(sum(w**2) + 1e-30)`, so such a channel contributes `factor` to the
    loss and has gradient exactly zero (a subgradient: no direction is
    preferred). Its value and gradient are finite.

    How strong `factor` must be: with SGD at learning rate `lr` and momentum
    `mu`, a channel's norm relaxes toward 1 in about
    `(1 - mu) / (2 * lr * factor)` steps (500 steps at lr 0.1, momentum 0.9,
    factor 1e-3; `keras_normloss.methods.norm_theory`). A run much shorter than
    that never reaches the manifold.

    Args:
        factor: the regularization factor λ, a non-negative float.
        axis: the axes that make up one output channel's weight vector.
            `None` (default) means every axis but the last, right for Dense,
            Conv1D/2D/3D and the pointwise kernel of separable convolutions.
            Use `(0, 1)` for a DepthwiseConv2D kernel and `(0, 1, 3)` for a
            Conv2DTranspose kernel; `keras_normloss.attach` and
            `keras_normloss.output_channel_axes` pick the right one per layer.

    Raises:
        ValueError: if `factor` is negative, NaN, infinite or not a number, or
            `axis` is not None, an int or a tuple of distinct ints. When called:
            if an axis is out of range for the kernel, or `axis=None` and the
            kernel has rank < 2.

    Example:

    ```python
    layer = keras.layers.Conv2D(64, 3, kernel_regularizer=NormLoss(1e-3))
    dw = keras.layers.DepthwiseConv2D(3, depthwise_regularizer=NormLoss(1e-3, axis=(0, 1)))
    ```
    """

    def __init__(self, factor=1e-3, axis=None):
        self.factor = validate_factor(factor, "factor")
        self.axis = norms.normalize_axis(axis)

    def __call__(self, x):
        norms_ = norms.channel_norms(x, self.axis)
        return ops.cast(self.factor, norms_.dtype) * ops.sum(ops.square(1.0 - norms_))

    def get_config(self):
        return {
            "factor": self.factor,
            "axis": None if self.axis is None else list(self.axis),
        }

    def __repr__(self):
        return f"NormLoss(factor={self.factor!r}, axis={self.axis!r})"


def weight_decay(wd):
    """Weight decay in the paper/PyTorch convention: gradient `wd * w`.

    Keras's `L2(l2)` adds `l2 * sum(w**2)`, whose gradient is `2 * l2 * w`;
    PyTorch's `SGD(weight_decay=wd)` and the Norm Loss paper add `wd * w` to
    the gradient. So a paper's weight decay `wd` is `keras.regularizers.L2(wd /
    2)`. Using `L2(wd)` doubles every weight-decay baseline.

    This is coupled weight decay (added to the loss, so it passes through
    momentum), as in the papers' SGD runs. It is not the decoupled
    `weight_decay` argument of Keras optimizers, which differs from it once
    momentum is used.

    The result is a plain `keras.regularizers.L2`, so a model saved with it
    loads without keras-normloss.

    Args:
        wd: the weight decay, a non-negative float (1e-4 for the papers'
            CIFAR ResNets, 5e-4 for Wide ResNets).

    Returns:
        `keras.regularizers.L2(wd / 2)`.

    Raises:
        ValueError: if `wd` is negative, NaN, infinite or not a number.

    Example:

    ```python
    layer = keras.layers.Dense(10, kernel_regularizer=weight_decay(5e-4))
    ```
    """
    return keras.regularizers.L2(validate_factor(wd, "wd") / 2.0)


def _kernel_matrix(x, axis):
    """The kernel as the matrix W of shape (fan_in, C_out), in the penalty's dtype.

    The reduction axes (`axis`, as for NormLoss) become the rows, in increasing
    order; the remaining output-channel axes the columns. For a Conv2D kernel
    (3, 3, 4, 8) that is `x.reshape(36, 8)`. The row and column order does not
    change either penalty: permuting them conjugates the Gram matrix by a
    permutation, which keeps its Frobenius norm and its spectrum.
    """
    x = ops.convert_to_tensor(x)
    rows = norms.reduction_axes(x.shape, axis)
    columns = tuple(i for i in range(len(x.shape)) if i not in rows)
    x = ops.cast(x, norms.compute_dtype(x.dtype))
    x = ops.transpose(x, rows + columns)
    fan_in = math.prod(x.shape[: len(rows)])
    return ops.reshape(x, (fan_in, math.prod(x.shape[len(rows) :])))


def _gram_minus_identity(w):
    """`WᵀW − I` for a (fan_in, C_out) matrix `W`, on the smaller side of `W`.

    `WᵀW` (C_out × C_out) unless C_out > fan_in, then `WWᵀ` (fan_in × fan_in),
    as the reference: `W.view(C_out, -1)`, then `WᵀW` if rows > cols else
    `WWᵀ` (VITA-Group/Orthogonality-in-CNNs, Wide-Resnet/train_n.py,
    `l2_reg_ortho`). Both Gram matrices share their non-zero eigenvalues
    s_i²; the larger one adds |fan_in − C_out| zero eigenvalues, i.e.
    eigenvalues −1 of the difference, which no weight can move.

    Returns:
        A square tensor of size min(fan_in, C_out).
    """
    fan_in, channels = w.shape
    gram = ops.matmul(w, ops.transpose(w)) if channels > fan_in else ops.matmul(ops.transpose(w), w)
    return gram - ops.eye(gram.shape[0], dtype=gram.dtype)


def power_iteration_start(size, kernel):
    """SRIP's start vector: uniform-looking in [0, 1), new whenever the kernel changes.

    The reference draws `b = torch.rand(size, 1)` afresh at every call. A
    fixed `b` would let training fool the penalty: the two-step estimate is
    `‖A²b‖²/‖Ab‖²`, zero as soon as `Ab = 0`, a condition on one direction
    only (measured: minimising SRIP alone on a 36×8 kernel with a fixed b left
    the estimate at 0.68 and the true σ² at 32.8; with a fresh b every step
    σ² fell to 0.02). A random draw needs random state, which a regularizer
    cannot carry through a jitted JAX step, so `b` is instead hashed from the
    kernel's current values: the low bits of `Σw²` set a phase, and
    `b_i = frac(43758.5453·sin(12.9898·i + phase))` (the common shader hash).
    Every optimizer step changes the kernel and so draws another
    `b`, on every backend and under `jit`, with no state; `b` carries no
    gradient, as the reference's.

    Args:
        size: the Gram matrix's size, min(fan_in, C_out).
        kernel: the kernel the Gram matrix comes from.

    Returns:
        A float32 tensor of shape (size, 1).

    Example:

    ```python
    b = power_iteration_start(3, np.ones((4, 3), "float32"))  # 3 values in [0, 1)
    ```
    """
    total = ops.stop_gradient(ops.sum(ops.square(ops.cast(kernel, "float32"))))
    total = ops.maximum(total, 1e-30)
    # The mantissa of Σw², in [1, 2); its bits below the 12th move at every step.
    mantissa = total * ops.power(2.0, -ops.floor(ops.log2(total)))
    low_bits = mantissa * 4096.0
    phase = 6.283185 * (low_bits - ops.floor(low_bits))
    i = ops.arange(1, size + 1, dtype="float32")
    h = ops.sin(12.9898 * i + phase) * 43758.5453
    return ops.expand_dims(h - ops.floor(h), -1)


# The normalisation x / max(‖x‖, sqrt(eps)): finite value and gradient when W
# is exactly orthogonal (W Wᵀ − I = 0); below float32 resolution otherwise.
_NORMALIZE_EPSILON = 1e-30


def _spectral_norm_squared(a, iterations=2, start=None):
    """σ(A)² of a symmetric matrix `A` by power iteration, as SRIP computes it.

    With `x` the normalised start vector `start` (`power_iteration_start`), `iterations
    − 1` steps `x ← Ax/‖Ax‖`, then `σ = ‖Ax‖`. At 2 iterations this is the
    reference's `v1 = A b; v2 = v1/‖v1‖; v3 = A v2; ‖v3‖²`, i.e. ‖A²b‖²/‖Ab‖².
    The gradient flows through every step (only the start vector is a
    constant), as in the reference. A few iterations underestimate σ: the
    estimate is ≤ σ and tends to it as `iterations` grows.

    Args:
        a: a square symmetric tensor.
        iterations: the number of products with `A`, an int >= 1.

    Returns:
        A scalar tensor.
    """
    x = ops.cast(start, a.dtype)
    x = x / ops.norm(x)
    for _ in range(iterations - 1):
        y = ops.matmul(a, x)
        x = y * ops.rsqrt(ops.maximum(ops.sum(ops.square(y)), _NORMALIZE_EPSILON))
    return ops.sum(ops.square(ops.matmul(a, x)))


def validate_iterations(value, name):
    """Returns `value` as a Python int >= 1, or raises a Keras-style ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected an int >= 1. Received: {name}={value!r}"
        )
    return int(value)


@keras.saving.register_keras_serializable(package="keras_normloss")
class SoftOrthogonality(keras.regularizers.Regularizer):
    """Soft orthogonality (SO): pulls a kernel's Gram matrix to the identity.

    From Bansal, Chen and Wang, "Can We Gain More from Orthogonality
    Regularizations in Training Deep CNNs?", NeurIPS 2018 (arXiv 1810.09102),
    eq. 2, with the squared Frobenius norm:

        loss = factor * ||WᵀW − I||_F**2
        d loss / d W = 4 * factor * W (WᵀW − I)

    W is the kernel as a (fan_in, C_out) matrix: the output-channel axes
    (those not in `axis`) last, the others flattened into rows; for a Conv2D
    kernel (k, k, C_in, C_out) that is `kernel.reshape(k*k*C_in, C_out)` (the
    reference's `W.view(C_out, -1)`, transposed). The Gram matrix is taken on
    the smaller side, as the reference's SRIP code does: `WᵀW` (C_out ×
    C_out) unless C_out > fan_in, then `WWᵀ` (fan_in × fan_in). The penalty is
    then Σ_i (s_i² − 1)² over the singular values s_i of W, zero at
    orthonormal columns (or rows); the larger side would add the constant
    |fan_in − C_out| and change no gradient.

    The reference repository ships no SO code (its README lists SO as not
    released); the paper defines it. Each singular value relaxes to 1 with a
    time constant of about `(1 - mu) / (8 * lr * factor)` SGD steps, 4 times Norm
    Loss's rate at the same factor. The paper's runs multiply the factor by a
    schedule (see `SRIP`); here it is constant, as every penalty of the table.
    Computed in float32 for 16-bit kernels, as NormLoss.

    Args:
        factor: the regularization factor λ, a non-negative float.
        axis: the axes that make up one output channel's weight vector, as
            NormLoss's (`None`: every axis but the last; `attach` and
            `keras_normloss.methods.apply` give each kernel its own).

    Raises:
        ValueError: if `factor` is negative, NaN, infinite or not a number, or
            `axis` is not None, an int or a tuple of distinct ints. When called:
            if an axis is out of range for the kernel.

    Example:

    ```python
    layer = keras.layers.Conv2D(64, 3, kernel_regularizer=SoftOrthogonality(1e-2))
    SoftOrthogonality(1.0)(np.eye(4, dtype="float32"))  # 0.0: orthonormal columns
    ```
    """

    def __init__(self, factor=1e-2, axis=None):
        self.factor = validate_factor(factor, "factor")
        self.axis = norms.normalize_axis(axis)

    def __call__(self, x):
        a = _gram_minus_identity(_kernel_matrix(x, self.axis))
        return ops.cast(self.factor, a.dtype) * ops.sum(ops.square(a))

    def get_config(self):
        return {"factor": self.factor, "axis": None if self.axis is None else list(self.axis)}

    def __repr__(self):
        return f"SoftOrthogonality(factor={self.factor!r}, axis={self.axis!r})"


@keras.saving.register_keras_serializable(package="keras_normloss")
class SRIP(keras.regularizers.Regularizer):
    """SRIP: the squared spectral norm of `WᵀW − I`, by power iteration.

    Spectral restricted isometry property regularization, from Bansal, Chen
    and Wang, "Can We Gain More from Orthogonality Regularizations in Training
    Deep CNNs?", NeurIPS 2018 (arXiv 1810.09102), as its reference code
    computes it (VITA-Group/Orthogonality-in-CNNs, Wide-Resnet/train_n.py,
    `l2_reg_ortho`, the code behind the paper's Wide ResNet results):

        A = WᵀW − I
        v = A b / ||A b||            b: a start vector in [0, 1), new every step
        loss = factor * ||A v||**2   (≈ factor * σ(A)**2)

    W is the kernel as a (fan_in, C_out) matrix: the output-channel axes
    (those not in `axis`) last, the others flattened into rows; for a Conv2D
    kernel (k, k, C_in, C_out) that is `kernel.reshape(k*k*C_in, C_out)` (the
    reference's `W.view(C_out, -1)`, transposed). A is taken on the smaller
    side, as the reference: `WᵀW − I` (C_out × C_out) unless C_out > fan_in,
    then `WWᵀ − I` (fan_in × fan_in). On the larger side A would have the
    eigenvalue −1 (the Gram's null space) that no weight can move, so σ(A)
    would never fall below 1.

    `||A v||` estimates σ(A) after `power_iterations` products with A (the
    reference's two); the estimate is at most σ(A). The gradient flows through
    the whole iteration, as in the reference (b carries none). The reference
    draws `b = torch.rand(n, 1)` at every call; here b is hashed from the
    kernel's current values (`power_iteration_start`), so it changes at every
    step as the reference's does, without random state: the penalty is a
    deterministic function of the weights and stateless under `jit`. (A b fixed once would let training zero the estimate
    while σ stays large.) At an exactly orthogonal W the value and gradient
    are 0.

    The reference multiplies the factor by a schedule (`adjust_ortho_decay_rate`,
    1-based epochs e): λ for e <= 20, λ·1e-3 up to e = 50, λ·1e-4 up to 70,
    λ·1e-6 up to 120, then 0 (the ImageNet scripts: first drop after e = 30);
    its initial λ is 1e-2 on CIFAR and SVHN (`--ortho-decay`), 1e-6 on
    ImageNet. Here `factor` is constant, as every penalty of the table; the
    presets' default is the reference's initial λ. The Wide ResNet code
    regularizes every weight of rank >= 2, the classifier included: this
    method's default layers, "kernels".

    The reference's other scripts differ: SVHN/train.py and the ImageNet
    scripts always take `WᵀW` on the fan_in side and estimate σ as `uᵀAv`
    from a Gaussian start; the Keras ResNet script (ResNet/resnet_cifar_new.py)
    adds σ (not squared) on the C_out side plus 1e-4·||W||_F, on Conv2D
    kernels only. Computed in float32 for 16-bit kernels, as NormLoss.

    Args:
        factor: the regularization factor λ, a non-negative float.
        axis: the axes that make up one output channel's weight vector, as
            NormLoss's (`None`: every axis but the last; `attach` and
            `keras_normloss.methods.apply` give each kernel its own).
        power_iterations: the number of products with A, an int >= 1
            (default 2, the reference's).

    Raises:
        ValueError: if `factor` is negative, NaN, infinite or not a number,
            `axis` is not None, an int or a tuple of distinct ints, or
            `power_iterations` is not an int >= 1. When called: if an axis is
            out of range for the kernel.

    Example:

    ```python
    layer = keras.layers.Conv2D(64, 3, kernel_regularizer=SRIP(1e-2))
    SRIP(1.0)(2.0 * np.eye(3, dtype="float32"))  # 9.0: WᵀW − I = 3·I
    ```
    """

    def __init__(self, factor=1e-2, axis=None, power_iterations=2):
        self.factor = validate_factor(factor, "factor")
        self.axis = norms.normalize_axis(axis)
        self.power_iterations = validate_iterations(power_iterations, "power_iterations")

    def __call__(self, x):
        a = _gram_minus_identity(_kernel_matrix(x, self.axis))
        start = power_iteration_start(a.shape[0], x)
        return ops.cast(self.factor, a.dtype) * _spectral_norm_squared(
            a, self.power_iterations, start
        )

    def get_config(self):
        return {
            "factor": self.factor,
            "axis": None if self.axis is None else list(self.axis),
            "power_iterations": self.power_iterations,
        }

    def __repr__(self):
        return (
            f"SRIP(factor={self.factor!r}, axis={self.axis!r}, "
            f"power_iterations={self.power_iterations!r})"
        )
