"""What ONI and OLM share: centred rows of a kernel, orthogonalized per group of channels."""

import keras
import numpy as np
from keras import ops

from keras_normloss.layers.reparametrization import KernelReparametrization
from keras_normloss.norms import UnsupportedLayerError

# Orthogonalizing rows is meaningful only where every output channel sees the
# same inputs. A depthwise kernel's channels (and filters in different groups
# of a grouped convolution) read disjoint inputs: the layer's full weight
# matrix is block-diagonal and already orthogonal across them, and whitening
# their taps against each other would mix unrelated filters.
_ORTHOGONAL_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)


def orthogonal_group_size(out, fan_in, group_size):
    """The number of rows per group that ONI and OLM actually use.

    Both methods centre each row (subtract its mean over the fan-in), which
    puts it in the `(d - 1)`-dimensional subspace orthogonal to the all-ones
    vector. A group of more than `d - 1` rows is then rank-deficient: it
    cannot be orthonormal, and its covariance is singular, which gives NaN
    without an epsilon and dead (near-zero) channels with one. So a group
    holds `min(group_size, out, d - 1)` rows (`group_size=None`: all `out`
    rows, then the same clip). The Torch references clip to `d`; `d - 1` is
    the bound that keeps every group full-rank. Groups are contiguous blocks
    of output channels and the last one may be smaller.

    Full rank is not good conditioning: a near-square group (`m` close to
    `d`, e.g. a 1x1 convolution with more outputs than inputs) often has a
    tiny smallest singular value (measured, 1x1 conv 16 -> 32, random
    normal kernel: eigenvalues of `Zc Zcᵀ` from 5e-5 to 50 in one group).
    OLM still whitens it (up to `eps` and float32 round-off); ONI with a
    small `T` leaves such directions short. A smaller `group_size` avoids
    it.

    Args:
        out: the number of output channels (rows).
        fan_in: `d`, the number of weights feeding each output channel.
        group_size: the requested group size, or `None` for one group.

    Returns:
        The group size, an int >= 1.

    Raises:
        ValueError: if `fan_in < 2`: a centred row of one weight is zero.

    Example:

    ```python
    orthogonal_group_size(32, 16, 64)  # a 1x1 conv 16 -> 32: groups of 15
    ```
    """
    if fan_in < 2:
        raise UnsupportedLayerError(
            "Invalid value for argument `fan_in`: expected an int >= 2; ONI and OLM "
            "centre each output channel's weights over the fan-in, which leaves "
            f"nothing to orthogonalize for a single weight. Received: fan_in={fan_in}"
        )
    requested = out if group_size is None else group_size
    return max(1, min(requested, out, fan_in - 1))


def _per_group(rows, group, fn):
    """Applies `fn` (batched `(g, m, d) -> (g, m, d)`) to contiguous row groups."""
    out, fan_in = rows.shape
    full = out // group
    rest = out - full * group
    parts = []
    if full:
        blocks = ops.reshape(rows[: full * group], (full, group, fan_in))
        parts.append(ops.reshape(fn(blocks), (full * group, fan_in)))
    if rest:
        blocks = ops.reshape(rows[full * group :], (1, rest, fan_in))
        parts.append(ops.reshape(fn(blocks), (rest, fan_in)))
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)


def _centre(z):
    return z - ops.mean(z, axis=-1, keepdims=True)


def _gram(zc, eps):
    m = zc.shape[-2]
    s = ops.matmul(zc, ops.swapaxes(zc, -1, -2))
    return s + ops.cast(eps, s.dtype) * ops.eye(m, dtype=s.dtype)


@ops.custom_gradient
def _inverse_sqrt_psd(s):
    """`S^(-1/2)` of a batch of symmetric positive-definite matrices.

    Differentiating through `eigh` gives terms `1 / (λ_i − λ_j)`, infinite
    when two eigenvalues coincide (JAX then returns NaN; it happens e.g. when
    a group's rows are already orthogonal with equal norms). The gradient of
    a matrix function has a closed form without them (Daleckii–Krein): for
    `f(λ) = λ^(-1/2)` and `r = sqrt(λ)`, the divided difference
    `(f(λ_i) − f(λ_j)) / (λ_i − λ_j) = −1 / (r_i r_j (r_i + r_j))`, which
    also equals `f'(λ_i)` at `i = j`.
    """
    eigenvalues, u = ops.eigh(s)
    tiny = np.finfo(keras.backend.standardize_dtype(s.dtype)).tiny
    r = ops.sqrt(ops.maximum(eigenvalues, tiny))
    ut = ops.swapaxes(u, -1, -2)
    result = ops.matmul(u / ops.expand_dims(r, -2), ut)

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        ri, rj = ops.expand_dims(r, -1), ops.expand_dims(r, -2)
        divided_differences = -1.0 / (ri * rj * (ri + rj))
        upstream = 0.5 * (upstream + ops.swapaxes(upstream, -1, -2))
        inner = ops.matmul(ops.matmul(ut, upstream), u) * divided_differences
        return ops.matmul(ops.matmul(u, inner), ut)

    return result, grad


class CentredOrthogonalization(KernelReparametrization):
    """Shared by ONI and OLM: centred rows, orthogonalized per group."""

    supported_layers = _ORTHOGONAL_LAYERS

    @classmethod
    def _check_layer(cls, layer):
        super()._check_layer(layer)
        if getattr(layer, "groups", 1) != 1:
            raise UnsupportedLayerError(
                f"Invalid value for argument `layer`: {cls.__name__} needs every "
                "output channel to see the same inputs, but "
                f"'{layer.name}' is a grouped convolution. Received: "
                f"layer={layer.name} of type {type(layer).__name__} with groups={layer.groups}"
            )

    @classmethod
    def _check_shape(cls, layer, layout):
        if layout.fan_in < 2:
            raise UnsupportedLayerError(
                f"Invalid value for argument `layer`: {cls.__name__} centres each output "
                "channel's weights over the fan-in, which leaves nothing to orthogonalize "
                f"for layer '{layer.name}' with a fan-in of {layout.fan_in}. "
                f"Received: layer={layer.name} of type {type(layer).__name__}"
            )

    def normalize(self, rows):
        group = orthogonal_group_size(rows.shape[0], rows.shape[1], self.group_size)
        return _per_group(rows, group, self._orthogonalize_group)

    def _orthogonalize_group(self, z):
        """Batched `(g, m, d) -> (g, m, d)`."""
        raise NotImplementedError
