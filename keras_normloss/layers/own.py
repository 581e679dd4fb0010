"""OLM/OWN: orthogonal weight normalization by centred whitening (Huang et al., AAAI 2018)."""

import keras
from keras import ops

from keras_normloss.layers.orthogonalization import (
    CentredOrthogonalization,
    _centre,
    _gram,
    _inverse_sqrt_psd,
)
from keras_normloss.layers.reparametrization import check_float, check_positive_int


@keras.saving.register_keras_serializable(package="keras_normloss")
class OrthogonalWeightNorm(CentredOrthogonalization):
    """Orthogonal weight normalization (OLM/OWN): exactly orthonormal rows per group.

    From Huang, Liu, Lang, Yu, Wang and Li, "Orthogonal Weight Normalization:
    Solution to Optimization over Multiple Dependent Stiefel Manifolds in Deep
    Neural Networks", AAAI 2018 (code: github.com/huangleiBuaa/OthogonalWN).
    Per group of rows `Z` (`(m, d)`, see `orthogonal_group_size`), a centred
    ZCA whitening:

        Zc = Z − rowmean(Z);  W = scale_c · ((Zc Zcᵀ + eps·I)^(-1/2) Zc)_c

    computed with `keras.ops.eigh`, so `W Wᵀ = I` within a group (up to
    `eps`) and every row has unit length times its scale. The gradient of
    `S^(-1/2)` uses its closed form, finite when eigenvalues coincide.

    Groups hold at most `d − 1` rows (see `orthogonal_group_size`): a
    larger group is rank-deficient after centring, and the PyTorch OWN code
    (no eps) returns NaN there.

    The scale. The defaults, `scale_init=1.0, learnable_scale=False`, are
    the Torch OLM's, the code of the paper's experiments (`olm`, `olm-l1`):
    it has no scale, and its rows have unit length
    (`module/spatial/cudnn_Spatial_Weight_DBN_Row.lua` l.48-53, 337-338 in
    github.com/huangleiBuaa/OthogonalWN). The PyTorch `OWN_Conv2d`
    multiplies by a fixed 1.414 unless `adjustScale=True` makes it a
    learnable scale starting at 1.414 (`module_pytorch/OWN.py` l.57-67;
    the same class in the ONI repository): `scale_init=1.414` gives its
    default, adding `learnable_scale=True` its `adjustScale`. The kernel
    starts as the wrapped layer has it (both references draw theirs with
    the layer's ordinary initialization).

    "OLM-L1" in the papers is OLM on the first convolution only: use
    `reparametrize(model, OrthogonalWeightNorm, where=...)` on the stem.

    Supported layers: Dense, EinsumDense, Conv1D/2D/3D with `groups=1`.

    Args:
        layer: the layer to wrap.
        group_size: rows per group, an int >= 1, or `None` for one group
            (default 64, every OLM script's `m_perGroup`); clipped to
            `min(group_size, out, d − 1)`.
        scale_init: the per-channel scale (its initial value if learnable), a
            positive float (default 1: the Torch OLM; 1.414: the PyTorch OWN).
        learnable_scale: whether the scale is trained (default False, as
            both references by default).
        eps: added to the diagonal of `Zc Zcᵀ`, a non-negative float (default
            1e-5, as ONI; the PyTorch OWN has none, the Torch OLM adds 1e-8 to
            `Zc Zcᵀ / d`). It is absolute: a direction with eigenvalue `λ`
            of `Zc Zcᵀ` comes out with length `sqrt(λ / (λ + eps))`, so
            kernels with very small weights are shrunk rather than whitened.
        **kwargs: base layer arguments.

    Raises:
        ValueError: for an argument out of range; `UnsupportedLayerError` for an
            unsupported layer, a grouped convolution, or a fan-in below 2.

    Example:

    ```python
    stem = OrthogonalWeightNorm(keras.layers.Conv2D(16, 3, use_bias=False))
    y = stem(np.ones((2, 32, 32, 3), "float32"))  # 16 orthonormal 27-d filters
    ```
    """

    _name_prefix = "orthogonal_weight_norm"

    def __init__(
        self,
        layer,
        group_size=64,
        scale_init=1.0,
        learnable_scale=False,
        eps=1e-5,
        **kwargs,
    ):
        super().__init__(layer, scale_init=scale_init, learnable_scale=learnable_scale, **kwargs)
        self.group_size = check_positive_int(group_size, "group_size", allow_none=True)
        self.eps = check_float(eps, "eps", positive=False)

    def _orthogonalize_group(self, z):
        zc = _centre(z)
        return ops.matmul(_inverse_sqrt_psd(_gram(zc, self.eps)), zc)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size, "eps": self.eps}
