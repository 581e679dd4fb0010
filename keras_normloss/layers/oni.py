"""ONI: orthogonalization by Newton's iteration (Huang et al., CVPR 2020), with the references' settings."""

import keras
from keras import ops

from keras_normloss import norms
from keras_normloss.layers.orthogonalization import (
    CentredOrthogonalization,
    _centre,
    _gram,
    _per_group,
    orthogonal_group_size,
)
from keras_normloss.layers.reparametrization import check_float, check_positive_int

# How ONI's raw kernel `v` starts (the `init` argument):
#   "orthogonal": the wrapped layer's kernel, centred and orthogonalized per
#       group by 10 Newton steps without eps: the Torch CIFAR reference's
#       `reset_centered_orthogonal` (ONI_Torch/modules/
#       Spatial_Weight_DBN_PowerIter_F2.lua l.103-156, called from `__init__`
#       l.83; the model's He `ConvInit` that would overwrite it is commented out,
#       models/CNN/res_ONI_scale.lua l.132).
#   "keep": the wrapped layer's kernel as it is: the PyTorch ImageNet
#       reference, whose `ONI_Conv2d` is an `nn.Conv2d` that the model's
#       He-normal loop initialises (ONI_PyTorch/ImageNet/models/
#       resnet_var_ONI.py l.106-109).
INITS = ("orthogonal", "keep")
# The reference's Newton steps at initialisation (`local nIter=10`, l.126), not `T`.
_INIT_ITERATIONS = 10

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
        "init": "orthogonal",
    },
    "cifar_vgg_no_bn": {
        "iterations": 5,
        "group_size": 384,
        "scale_init": 1.414,
        "learnable_scale": True,
        "init": "orthogonal",
    },
    "imagenet_resnet": {
        "iterations": 2,
        "group_size": None,
        "scale_init": 1.414,
        "learnable_scale": True,
        "init": "keep",
    },
}


def _normalized_gram(z, eps):
    """Batched `(g, m, d)`: `Zc`, `Ŝ = S / ||S||_F` and `||S||_F`, `S = Zc Zcᵀ + eps·I`.

    A group whose centred rows are all zero (a constant kernel) would divide 0
    by 0 without eps; the floor on `||S||_F` keeps its result zero instead and
    changes no other group.
    """
    zc = _centre(z)
    s = _gram(zc, eps)
    norm_s = ops.sqrt(ops.sum(ops.square(s), axis=(-2, -1), keepdims=True))
    norm_s = ops.maximum(norm_s, ops.cast(1e-30, norm_s.dtype))
    return zc, s / norm_s, norm_s


def _newton_orthogonalize(z, iterations, eps):
    """Batched `(g, m, d)`: ONI's map `B_T Zc / sqrt(||S||_F)`, the reference's iteration."""
    zc, s, norm_s = _normalized_gram(z, eps)
    b = ops.broadcast_to(ops.eye(s.shape[-1], dtype=s.dtype), s.shape)
    for _ in range(iterations):
        b3 = ops.matmul(ops.matmul(b, b), b)
        b = 1.5 * b - 0.5 * ops.matmul(b3, s)
    return ops.matmul(b, zc) / ops.sqrt(norm_s)


def _reference_start(z):
    """Batched `(g, m, d)`: the Torch reference's start, `B_10 Zc / sqrt(||S||_F)`, no eps.

    The reference runs `_newton_orthogonalize`'s uncoupled iteration in
    float64 (Torch's default tensor type). In float32 that iteration amplifies
    round-off: measured over 10 steps on random Gaussian groups, it drifts up
    to 0.17 from float64 on 8 x 27 groups and blows up (errors of 7 to 3e4)
    on 16 x 27 and 15 x 16 ones. The coupled Newton–Schulz form (Higham)
    below, `Z_0 = I, Y_0 = Ŝ; P = (3I − Z Y)/2; Y ← Y P; Z ← P Z`, has the
    same iterates in exact arithmetic (`Z_t = B_t`, `Y_t = Ŝ B_t`: all are
    polynomials in `Ŝ`) and stays within 5e-7 of the float64 reference in
    float32 (5e-5 on the near-square 15 x 16), at the same three matrix
    products per step.
    """
    zc, s, norm_s = _normalized_gram(z, 0.0)
    eye = ops.broadcast_to(ops.eye(s.shape[-1], dtype=s.dtype), s.shape)
    y, b = s, eye
    for _ in range(_INIT_ITERATIONS):
        p = 0.5 * (3.0 * eye - ops.matmul(b, y))
        y, b = ops.matmul(y, p), ops.matmul(p, b)
    return ops.matmul(b, zc) / ops.sqrt(norm_s)


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

    How `v` starts (`init`). With `"orthogonal"` (the default), `build`
    replaces the wrapped layer's kernel, group by group, by the map above
    with 10 steps and no eps (in a form that is stable in float32, see
    `_reference_start`): centred rows, orthonormal and of unit length up to
    what 10 steps reach (measured on He-normal kernels, max |VVᵀ − I|: 1e-6
    for 3x3 convolutions, groups of 16 or 64; 0.07 to 0.3 for a 1x1
    convolution 16 → 32, whose groups of 15 rows in `d = 16` are badly
    conditioned). This is the Torch
    CIFAR reference's start (`reset_centered_orthogonal` in
    `Spatial_Weight_DBN_PowerIter_F2.lua`, on a fresh `torch.randn` draw).
    The map does not depend on the kernel's scale, so from a He-normal
    (untruncated) kernel, as this package's models draw with a seed per
    layer, it gives the reference's start in distribution, and
    reproducibly. The first forward pass then sees near-orthonormal rows
    even at `T = 5` (measured: the CIFAR stem 3 → 16 has max |WWᵀ − I| ≈
    1e-5 per group instead of 0.06 to 0.29 from the raw He kernel; groups of
    64 come out orthogonal with every row of length 0.9993, since 5 steps
    from `Ŝ ≈ I/8` stop just short). With `"keep"` the kernel stays as the
    layer drew it (or as a pretrained model had it): the PyTorch ImageNet
    reference's start (He-normal `v`). Either way wrapping changes the
    layer's function, unlike `WeightNorm`; loading a saved model restores
    its saved `v`.

    Each step stretches a small eigenvalue's direction by at most 1.5, so an
    ill-conditioned group needs many steps; but this uncoupled iteration (the
    reference's) is numerically unstable for large `T` on such groups:
    measured on a 1x1 conv 16 -> 32, it overflows from `T` ≈ 14 even in
    float64. In float32 it drifts from the float64 result much earlier: on
    a CIFAR stem's group (16 × 27, Gaussian; worst of 50 draws) by 2e-6 at
    `T = 5`, 3e-4 at 7, 0.03 at 8 and 20 at 10. Keep `T` small, as the
    references do (2 to 5).

    Groups hold at most `d − 1` rows, since centred rows span at most `d − 1`
    dimensions (see `orthogonal_group_size`); a 1×1 conv 16 → 32 gets groups
    of 15, 15 and 2 rather than one rank-deficient group with dead channels.
    The PyTorch reference switches to a column form instead, which is not
    implemented here.

    Reference settings are in `ONI_PRESETS` (CIFAR ResNet-110 without BN:
    T=5, groups of 64, scale 0.8, orthogonal start; ImageNet ResNets: T=2,
    one group, 1.414, He-normal start).

    Supported layers: Dense, EinsumDense, Conv1D/2D/3D with `groups=1`.

    Args:
        layer: the layer to wrap.
        iterations: `T`, the number of Newton steps, an int >= 1 (default 5).
        group_size: rows per group, an int >= 1, or `None` for one group
            (default 64); clipped to `min(group_size, out, d − 1)`.
        scale_init: the initial per-channel scale, a positive float (default
            1.414: the PyTorch `NScale` default and the Torch CIFAR script's
            `-N_scale` default; its ResNet-110 script passes 0.8).
        learnable_scale: whether the scale is trained (default True, as in
            every CIFAR and ImageNet script of the reference:
            `adjustScale=True`, or `flag_adjustScale` true in the Torch
            models; the PyTorch class's own default is a fixed scale).
        eps: added to the diagonal of `S` before normalization, a non-negative
            float (default 1e-5 as the PyTorch `ONINorm`; the Torch module
            adds none).
        init: how `v` starts, `"orthogonal"` (default) or `"keep"`; see above.
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
        init="orthogonal",
        **kwargs,
    ):
        super().__init__(layer, scale_init=scale_init, learnable_scale=learnable_scale, **kwargs)
        self.iterations = check_positive_int(iterations, "iterations")
        self.group_size = check_positive_int(group_size, "group_size", allow_none=True)
        self.eps = check_float(eps, "eps", positive=False)
        if init not in INITS:
            raise ValueError(
                f"Invalid value for argument `init`: expected one of {INITS}. Received: init={init!r}"
            )
        self.init = init

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.init == "orthogonal":
            kernel = self._kernel_variable()
            kernel.assign(self._orthogonal_start(kernel.value))

    def _orthogonal_start(self, kernel_value):
        # In the compute dtype (float32 for 16-bit kernels), as the forward.
        dtype = norms.compute_dtype(kernel_value.dtype)
        rows = self._layout.to_rows(ops.cast(kernel_value, dtype))
        group = orthogonal_group_size(rows.shape[0], rows.shape[1], self.group_size)
        rows = _per_group(rows, group, _reference_start)
        return ops.cast(self._layout.from_rows(rows), kernel_value.dtype)

    def _orthogonalize_group(self, z):
        return _newton_orthogonalize(z, self.iterations, self.eps)

    def get_config(self):
        return {
            **super().get_config(),
            "iterations": self.iterations,
            "group_size": self.group_size,
            "eps": self.eps,
            "init": self.init,
        }
