"""The ImageNet bottleneck ResNet-50, v1.5 (stride on the 3x3 convolution).

Source: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, Table 1 (50-layer); v1.5 moves the stride of each downsampling
block from the first 1x1 to the 3x3 convolution, as torchvision's
`resnet50` and NVIDIA's reference do. Padding is explicit and symmetric
(ZeroPadding2D + "valid") wherever a stride is 2, as in PyTorch, where
Keras's "same" would pad only after.

Initialisation as torchvision's `resnet50`: conv kernels
N(0, 2 / (k * k * C_out)) (`kaiming_normal_(mode="fan_out")`), so channel
norms start near sqrt(2 * fan_in / fan_out): 0.31 at the stem, 0.71 at the
first stage's conv3 (1x1, 64 -> 256), 2.83 at the later conv1 (1x1,
256 -> 64), sqrt(2) at the 3x3 convs; not sqrt(2) everywhere; BatchNormalization gamma 1 and beta 0; the classifier as
`nn.Linear`'s default, weights and bias uniform +-1/sqrt(2048).
"""

import keras

from keras_normloss.models import building_blocks as bb

_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))


def _bottleneck(make, x, planes, stride, prefix):
    y = make.conv(planes, 1, name=f"{prefix}_conv1")(x)
    y = make.bn(name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = make.conv(planes, 3, stride, name=f"{prefix}_conv2")(y)
    y = make.bn(name=f"{prefix}_bn2")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu2")(y)
    y = make.conv(4 * planes, 1, name=f"{prefix}_conv3")(y)
    y = make.bn(name=f"{prefix}_bn3")(y)
    if stride != 1 or x.shape[-1] != 4 * planes:
        x = make.conv(4 * planes, 1, stride, name=f"{prefix}_shortcut_conv")(x)
        x = make.bn(name=f"{prefix}_shortcut_bn")(x)
    y = keras.layers.Add(name=f"{prefix}_add")([x, y])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def resnet50(
    num_classes=1000,
    *,
    input_shape=(224, 224, 3),
    kernel_regularizer=None,
    kernel_constraint=None,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    synchronized_bn=False,
    seed=None,
    name="resnet50",
):
    """Builds the ImageNet ResNet-50 v1.5 (25,557,032 trainable parameters).

    Differs from `keras.applications.ResNet50`: no conv biases (each conv is
    followed by BatchNormalization, which makes a bias redundant), the
    stride of downsampling blocks on the 3x3 rather than the first 1x1
    convolution (v1.5), symmetric padding for strided convolutions,
    BatchNormalization epsilon 1e-5 instead of 1.001e-5, a logits output,
    and no pretrained weights.

    Args:
        num_classes: the classifier's width.
        input_shape: `(height, width, channels)`, channels last; any size
            of at least 32x32.
        kernel_regularizer: as in `cifar_resnet`.
        kernel_constraint: as in `cifar_resnet`.
        bn_momentum: as in `cifar_resnet`.
        bn_epsilon: as in `cifar_resnet`.
        synchronized_bn: as in `cifar_resnet`.
        seed: as in `cifar_resnet`.
        name: the model's name.

    Returns:
        A functional `keras.Model`.

    Example:

    ```python
    model = resnet50(kernel_regularizer=NormLoss(1e-4), synchronized_bn=True)
    ```
    """
    bb.check_positive_int(num_classes, "num_classes")
    make = bb.LayerFactory(
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        synchronized_bn=synchronized_bn,
        seed=seed,
        classifier_bias_init="uniform",
    )
    inputs = keras.Input(input_shape, name="image")
    x = make.conv(64, 7, 2, name="stem_conv")(inputs)
    x = make.bn(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x)
    for stage, (planes, blocks) in enumerate(_STAGES, start=1):
        for block in range(1, blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _bottleneck(make, x, planes, stride, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = make.dense(num_classes, fan_in=x.shape[-1], name="classifier")(x)
    model = keras.Model(inputs, outputs, name=name)
    return bb.finish(model, kernel_regularizer, kernel_constraint)
