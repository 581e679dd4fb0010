"""The papers' networks, and a registry of named configurations.

    keras_normloss.models.names()                      # ['resnet110', 'resnet20', ..., 'wrn40_4']
    keras_normloss.models.get("resnet110", num_classes=100, kernel_regularizer=NormLoss(1e-3))

| name | network | source |
|---|---|---|
| resnet20/32/44/56/110 | CIFAR ResNet v1, option-A shortcuts | He et al. 2016, sec. 4.2 |
| resnet8 | the same family with one block per stage (78k parameters): CPU benchmarks | ours |
| wrn16_4, wrn16_8, wrn28_10, wrn40_4 | pre-activation Wide ResNet | Zagoruyko & Komodakis 2016 |
| resnet50 | ImageNet ResNet-50 v1.5 | He et al. 2016, Table 1 |
"""

import functools

from keras_normloss.models.building_blocks import ZeroPadShortcut
from keras_normloss.models.cifar_resnet import cifar_resnet
from keras_normloss.models.imagenet_resnet import resnet50
from keras_normloss.models.wide_resnet import wide_resnet

_REGISTRY = {
    **{f"resnet{d}": functools.partial(cifar_resnet, d) for d in (8, 20, 32, 44, 56, 110)},
    **{
        f"wrn{d}_{k}": functools.partial(wide_resnet, d, k)
        for d, k in ((16, 4), (16, 8), (28, 10), (40, 4))
    },
    "resnet50": resnet50,
}


def names():
    """Returns the registered model names, sorted.

    Example:

    ```python
    names()  # ['resnet110', 'resnet20', ..., 'wrn40_4']
    ```
    """
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """Builds a registered model.

    Args:
        name: one of `names()`, e.g. `"resnet110"`, `"wrn28_10"`, `"resnet50"`.
        **kwargs: passed to the builder (`num_classes`, `input_shape`,
            `kernel_regularizer`, `kernel_constraint`, `dropout` for Wide
            ResNets, `synchronized_bn`, `seed`, ...).

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for an unknown name.

    Example:

    ```python
    model = get("wrn28_10", num_classes=100, dropout=0.3)
    ```
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"Invalid value for argument `name`: expected one of {names()}. Received: name={name!r}"
        )
    return _REGISTRY[name](**kwargs)


__all__ = ["ZeroPadShortcut", "cifar_resnet", "get", "names", "resnet50", "wide_resnet"]
