"""Zagoruyko & Komodakis' Wide ResNets, WRN-d-k, for CIFAR.

Source: Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016: a 3x3
conv with 16 filters, three groups of n pre-activation basic blocks
(BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3) with 16k, 32k and 64k filters,
a 1x1 projection shortcut where the shape changes, then BN-ReLU, global
average pooling and a Dense classifier; depth 6n + 4. The Norm Loss paper's
WRN-28-10 is this network.

Initialisation as the authors' Torch code (`models/utils.lua`: `MSRinit`,
`FCinit`): conv kernels N(0, 2 / (k * k * C_out)), the classifier's weights
Torch's default uniform +-1/sqrt(fan_in) and its bias 0, and BatchNormalization
left at Torch's default: gamma U(0, 1), beta 0 (their PyTorch port too:
`bnparams` draws `torch.rand`). (Their later
PyTorch port draws conv kernels with fan_in instead.) Strided 3x3
convolutions are padded by 1 on every side, as there.
"""

import keras

from keras_normloss.models import building_blocks as bb


def _wide_block(make, x, filters, stride, dropout, prefix):
    o = make.bn(name=f"{prefix}_bn1")(x)
    o = keras.layers.ReLU(name=f"{prefix}_relu1")(o)
    if stride != 1 or x.shape[-1] != filters:
        # As in the authors' code, the projection sees the activated input.
        x = make.conv(filters, 1, stride, name=f"{prefix}_shortcut_conv")(o)
    y = make.conv(filters, 3, stride, name=f"{prefix}_conv1")(o)
    y = make.bn(name=f"{prefix}_bn2")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu2")(y)
    if dropout:
        y = make.dropout(dropout, name=f"{prefix}_dropout")(y)
    y = make.conv(filters, 3, name=f"{prefix}_conv2")(y)
    return keras.layers.Add(name=f"{prefix}_add")([x, y])


def wide_resnet(
    depth=28,
    width=10,
    num_classes=10,
    *,
    dropout=0.0,
    input_shape=(32, 32, 3),
    kernel_regularizer=None,
    kernel_constraint=None,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    synchronized_bn=False,
    seed=None,
    name=None,
):
    """Builds the pre-activation Wide ResNet WRN-`depth`-`width`.

    The model outputs logits (no softmax).

    Args:
        depth: 6n + 4 (16, 22, 28, 40 in the paper).
        width: the widening factor k (filters 16k, 32k, 64k).
        num_classes: the classifier's width.
        dropout: dropout rate between the two convolutions of each block
            (0.3 in the papers' CIFAR runs).
        input_shape: `(height, width, channels)`, channels last.
        kernel_regularizer: as in `cifar_resnet`.
        kernel_constraint: as in `cifar_resnet`.
        bn_momentum: as in `cifar_resnet`.
        bn_epsilon: as in `cifar_resnet`.
        synchronized_bn: as in `cifar_resnet`.
        seed: as in `cifar_resnet`.
        name: the model's name; `wrn{depth}_{width}` by default.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: if `depth` is not 6n + 4, `width` is not a positive int,
            or `dropout` is not in [0, 1).

    Example:

    ```python
    model = wide_resnet(28, 10, num_classes=100, dropout=0.3,
                        kernel_regularizer=NormLoss(1e-3))
    ```
    """
    n = bb.check_depth(depth, "6n+4", 4, "16, 22, 28, 40")
    bb.check_positive_int(width, "width")
    bb.check_positive_int(num_classes, "num_classes")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(
            "Invalid value for argument `dropout`: expected a float in [0, 1). "
            f"Received: dropout={dropout!r}"
        )
    make = bb.LayerFactory(
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        synchronized_bn=synchronized_bn,
        seed=seed,
        bn_gamma_init="uniform",
    )
    inputs = keras.Input(input_shape, name="image")
    x = make.conv(16, 3, name="stem_conv")(inputs)
    for stage, (filters, stride) in enumerate(
        zip((16 * width, 32 * width, 64 * width), (1, 2, 2)), start=1
    ):
        for block in range(1, n + 1):
            x = _wide_block(
                make, x, filters, stride if block == 1 else 1, dropout, f"stage{stage}_block{block}"
            )
    x = make.bn(name="final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = make.dense(num_classes, fan_in=x.shape[-1], name="classifier")(x)
    model = keras.Model(inputs, outputs, name=name or f"wrn{depth}_{width}")
    return bb.finish(model, kernel_regularizer, kernel_constraint)
