"""ONI: orthogonalization by Newton's iteration (Huang et al., CVPR 2020), with the references' settings."""

import keras
from keras import ops

from keras_normloss.methods.orthogonalization import CentredOrthogonalization, _centre, _gram
from keras_normloss.methods.reparametrization import check_float, check_positive_int

# The references' ONI settings (Huang et al., CVPR 2020; code at
# github.com/huangleiBuaa/ONI). Use as `ONI(layer, **ONI_PRESETS[name])`.
#   cifar_resnet_no_bn: CIFAR-10 ResNet-110 with every BatchNormalization removed
#       (ONI_Torch/experiments/execute_CNN_res_ONI.sh, models/CNN/res_ONI_scale.lua).
#   cifar_vgg_no_bn: the VGG-style CIFAR-10 network without BN
#       (execute_CNN_P0_ONI.sh, P0_ONI_scale.lua; groups of 384 channels).
#   imagenet_resnet: ImageNet ResNet-18/50 with BN, one group per layer
#       (ONI_PyTorch/ImageNet/experiments/resnet50_var_ONI.sh).
ONI_PRESETS = {
    "cifar_resnet_no_bn": {
        "iterations": 5,
        "group_size": 64,
        "scale_init": 0.8,
        "learnable_scale": True,
    },
    "cifar_vgg_no_bn": {
        "iterations": 5,
        "group_size": 384,
        "scale_init": 1.414,
        "learnable_scale": True,
    },
    "imagenet_resnet": {
        "iterations": 2,
        "group_size": None,
        "scale_init": 1.414,
        "learnable_scale": True,
    },
}


@keras.saving.register_keras_serializable(package="keras_normloss")
class ONI(CentredOrthogonalization):
    """Orthogonalization by Newton's iteration: near-orthonormal rows, then a scale.

    From Huang, Liu, Zhu, Wan, Yuan, Li and Shao, "Controllable
    Orthogonalization in Training DNNs", CVPR 2020, as in the reference
    PyTorch `ONINorm` (github.com/huangleiBuaa/ONI). Per group of rows `Z`
    (`(m, d)`, see `orthogonal_group_size`):

        Zc = Z − rowmean(Z);  S = Zc Zcᵀ + eps·I;  Ŝ = S / ||S||_F
        B_0 = I;  B_{t+1} = 1.5·B_t − 0.5·B_t³ Ŝ     (t < T = iterations)
        W = scale_c · (B_T Zc / sqrt(||S||_F))_c

    `B_T → Ŝ^(-1/2)`, so the rows of `W / scale` tend to an orthonormal set;
    `T` controls how closely (the paper's point: with T = 5 the rows are only
    approximately orthonormal). The scale is per channel, initialised to
    `scale_init` and trained if `learnable_scale`.

    Each step stretches a small eigenvalue's direction by at most 1.5, so an
    ill-conditioned group needs many steps; but this uncoupled iteration (the
    reference's) is numerically unstable for large `T` on such groups:
    measured on a 1x1 conv 16 -> 32, it overflows from `T` ≈ 14 even in
    float64. Keep `T` small, as the references do (2 to 5).

    Groups hold at most `d − 1` rows, since centred rows span at most `d − 1`
    dimensions (see `orthogonal_group_size`); a 1×1 conv 16 → 32 gets groups
    of 15, 15 and 2 rather than one rank-deficient group with dead channels.
    The PyTorch reference switches to a column form instead, which is not
    implemented here.

    Reference settings are in `ONI_PRESETS` (CIFAR ResNet-110 without BN:
    T=5, groups of 64, scale 0.8; ImageNet ResNets: T=2, one group, 1.414).

    Supported layers: Dense, EinsumDense, Conv1D/2D/3D with `groups=1`.

    Args:
        layer: the layer to wrap.
        iterations: `T`, the number of Newton steps, an int >= 1 (default 5).
        group_size: rows per group, an int >= 1, or `None` for one group
            (default 64); clipped to `min(group_size, out, d − 1)`.
        scale_init: the initial per-channel scale, a positive float (default
            1.414, the reference's `NScale`).
        learnable_scale: whether the scale is trained (default True).
        eps: added to the diagonal of `S` before normalization, a non-negative
            float (default 1e-5 as in the reference).
        **kwargs: base layer arguments.

    Raises:
        ValueError: for an argument out of range; `UnsupportedLayerError` for an
            unsupported layer, a grouped convolution, or a fan-in below 2.

    Example:

    ```python
    conv = ONI(keras.layers.Conv2D(16, 3, use_bias=False), **ONI_PRESETS["cifar_resnet_no_bn"])
    y = conv(np.ones((2, 8, 8, 3), "float32"))
    ```
    """

    _name_prefix = "oni"

    def __init__(
        self,
        layer,
        iterations=5,
        group_size=64,
        scale_init=1.414,
        learnable_scale=True,
        eps=1e-5,
        **kwargs,
    ):
        super().__init__(layer, scale_init=scale_init, learnable_scale=learnable_scale, **kwargs)
        self.iterations = check_positive_int(iterations, "iterations")
        self.group_size = check_positive_int(group_size, "group_size", allow_none=True)
        self.eps = check_float(eps, "eps", positive=False)

    def _orthogonalize_group(self, z):
        zc = _centre(z)
        s = _gram(zc, self.eps)
        norm_s = ops.sqrt(ops.sum(ops.square(s), axis=(-2, -1), keepdims=True))
        s = s / norm_s
        b = ops.broadcast_to(ops.eye(s.shape[-1], dtype=s.dtype), s.shape)
        for _ in range(self.iterations):
            b3 = ops.matmul(ops.matmul(b, b), b)
            b = 1.5 * b - 0.5 * ops.matmul(b3, s)
        return ops.matmul(b, zc) / ops.sqrt(norm_s)

    def get_config(self):
        return {
            **super().get_config(),
            "iterations": self.iterations,
            "group_size": self.group_size,
            "eps": self.eps,
        }
