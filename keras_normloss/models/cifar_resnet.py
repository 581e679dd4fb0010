"""He et al.'s CIFAR ResNets (v1): ResNet-20, 32, 44, 56, 110, 1202.

Source: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2: a 3x3 conv with 16 filters, then three stages of n
basic blocks with 16, 32 and 64 filters (the first block of stages 2 and 3
subsamples by 2), global average pooling and a Dense classifier; depth
6n + 2. The Norm Loss paper's CIFAR ResNet-110 is this network.

Initialisation as fb.resnet.torch (Facebook's Torch reproduction of He et
al., `models/resnet.lua`, which the PBWN and ONI CIFAR code follow): conv
kernels N(0, 2 / (3 * 3 * C_out)), BatchNormalization gamma 1 and beta 0,
the classifier's weights Torch's default uniform +-1/sqrt(64) and its bias 0.
Strided 3x3 convolutions are padded by 1 on every side, as `padding=1` there.
"""

import keras

from keras_normloss.models import building_blocks as bb

_SHORTCUTS = ("A", "B")


def _basic_block(make, x, filters, stride, shortcut, prefix):
    y = make.conv(filters, 3, stride, name=f"{prefix}_conv1")(x)
    y = make.bn(name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = make.conv(filters, 3, name=f"{prefix}_conv2")(y)
    y = make.bn(name=f"{prefix}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        if shortcut == "A":
            x = bb.ZeroPadShortcut(filters, stride, name=f"{prefix}_shortcut")(x)
        else:
            x = make.conv(filters, 1, stride, name=f"{prefix}_shortcut_conv")(x)
            x = make.bn(name=f"{prefix}_shortcut_bn")(x)
    y = keras.layers.Add(name=f"{prefix}_add")([x, y])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def cifar_resnet(
    depth=110,
    num_classes=10,
    *,
    input_shape=(32, 32, 3),
    shortcut="A",
    kernel_regularizer=None,
    kernel_constraint=None,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    synchronized_bn=False,
    seed=None,
    name=None,
):
    """Builds He et al.'s CIFAR ResNet (v1) of depth 6n + 2.

    Shortcuts where the shape changes: option "A" (the default) subsamples
    and zero-pads the channels, has no parameters, and is what He et al.
    used for CIFAR, giving their published parameter counts (ResNet-20
    0.27M ... ResNet-110 1.7M); option "B" uses a 1x1 projection and
    BatchNormalization (2,752 more parameters).

    The model outputs logits (no softmax): train it with
    `SparseCategoricalCrossentropy(from_logits=True)`.

    Args:
        depth: 6n + 2: 20, 32, 44, 56, 110 or 1202 in the paper.
        num_classes: the classifier's width.
        input_shape: `(height, width, channels)`, channels last.
        shortcut: `"A"` or `"B"`, see above.
        kernel_regularizer: put on every Conv2D and Dense kernel, with the
            right axes (e.g. `NormLoss(1e-3)`, `weight_decay(1e-4)`); never on
            biases or BatchNormalization.
        kernel_constraint: likewise (e.g. `WeightRescaling()`).
        bn_momentum: BatchNormalization momentum (0.9 is PyTorch's 0.1).
        bn_epsilon: BatchNormalization epsilon.
        synchronized_bn: compute BatchNormalization statistics over all
            replicas under a `tf.distribute` strategy, so that the result
            does not depend on the number of replicas.
        seed: makes the initial weights reproducible.
        name: the model's name; `resnet{depth}` by default.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: if `depth` is not 6n + 2, `shortcut` is not "A" or "B",
            or another argument is out of range.

    Example:

    ```python
    model = cifar_resnet(110, num_classes=100, kernel_regularizer=NormLoss(1e-3))
    ```
    """
    n = bb.check_depth(depth, "6n+2", 2, "20, 32, 44, 56, 110, 1202")
    bb.check_positive_int(num_classes, "num_classes")
    if shortcut not in _SHORTCUTS:
        raise ValueError(
            f"Invalid value for argument `shortcut`: expected one of {_SHORTCUTS}. "
            f"Received: shortcut={shortcut!r}"
        )
    make = bb.LayerFactory(
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        synchronized_bn=synchronized_bn,
        seed=seed,
    )
    inputs = keras.Input(input_shape, name="image")
    x = make.conv(16, 3, name="stem_conv")(inputs)
    x = make.bn(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, n + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(make, x, filters, stride, shortcut, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = make.dense(num_classes, fan_in=x.shape[-1], name="classifier")(x)
    with bb.deep_graph_recursion_limit():
        model = keras.Model(inputs, outputs, name=name or f"resnet{depth}")
    return bb.finish(model, kernel_regularizer, kernel_constraint)
