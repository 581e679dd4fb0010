import warnings

import keras
import numpy as np
import pytest
from layer_cases import normloss_numpy

from keras_normloss import NormLoss, WeightRescaling, attach, weight_decay


def _kernels_by_type(model, types):
    """Independent count: walk the functional graph's layers by class."""
    return [layer for layer in model.layers if type(layer) in types]


def _normloss_total(model, factor):
    total = 0.0
    for layer in model.layers:
        if type(layer) in (keras.layers.Conv2D, keras.layers.Dense):
            k = layer.kernel.numpy()
            total += normloss_numpy(k.reshape(-1, k.shape[-1]).T, factor)
        elif type(layer) is keras.layers.DepthwiseConv2D:
            k = layer.kernel.numpy()
            total += normloss_numpy(k.reshape(-1, k.shape[-2] * k.shape[-1]).T, factor)
    return total


def test_resnet50_gets_one_penalty_per_conv_and_dense_kernel(tmp_path):
    model = keras.applications.ResNet50(weights=None)
    expected = _kernels_by_type(model, (keras.layers.Conv2D, keras.layers.Dense))
    assert len(expected) == 54  # 53 convolutions and the classifier
    assert model.losses == []
    report = attach(model, NormLoss(1e-4))
    assert len(report.attached) == 54 and not report.unsupported and not report.skipped
    assert len(model.losses) == 54
    assert float(sum(model.losses)) == pytest.approx(_normloss_total(model, 1e-4), rel=1e-5)

    path = tmp_path / "r50.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert len(loaded.losses) == 54
    assert float(sum(loaded.losses)) == pytest.approx(_normloss_total(model, 1e-4), rel=1e-5)


def test_mobilenetv2_depthwise_kernels_get_spatial_axes():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    report = attach(model, NormLoss(1e-4))
    by_type = {}
    for a in report.attached:
        by_type.setdefault(a.layer_type, set()).add(a.axes)
    assert by_type == {
        "Conv2D": {(0, 1, 2)},
        "DepthwiseConv2D": {(0, 1)},
        "Dense": {(0,)},
    }
    n_kernels = len(
        _kernels_by_type(
            model, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D)
        )
    )
    assert len(model.losses) == n_kernels == len(report.attached)
    assert float(sum(model.losses)) == pytest.approx(_normloss_total(model, 1e-4), rel=1e-5)


def _small_model():
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="inner_conv"),
            keras.layers.BatchNormalization(),
        ],
        name="inner",
    )
    inputs = keras.Input((8, 8, 3))
    x = inner(inputs)
    x = keras.layers.Conv2DTranspose(5, 3, name="up")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs)


def test_nested_model_and_transposed_axes():
    model = _small_model()
    report = attach(model, NormLoss(0.1))
    axes = {a.path: a.axes for a in report.attached}
    assert axes == {
        "inner/inner_conv/kernel": (0, 1, 2),
        "up/kernel": (0, 1, 3),
        "head/kernel": (0,),
    }
    assert len(model.losses) == 3
    up = model.get_layer("up").kernel.numpy()
    expected = normloss_numpy(np.moveaxis(up, 2, 0).reshape(5, -1), 0.1)
    # float32 against float64: the norms are close to 1, so (1 - norm) loses
    # digits; 1e-6 relative failed once in CI (1.1e-6), hence 1e-5.
    assert float(model.get_layer("up").losses[0]) == pytest.approx(expected, rel=1e-5)


def test_layer_types_and_where_select_layers():
    model = _small_model()
    report = attach(model, NormLoss(0.1), layer_types=keras.layers.Conv2D)
    assert [a.path for a in report.attached] == ["inner/inner_conv/kernel"]
    model = _small_model()
    report = attach(model, NormLoss(0.1), where=lambda layer: layer.name != "head")
    assert sorted(a.path for a in report.attached) == ["inner/inner_conv/kernel", "up/kernel"]


def test_existing_regularizers_are_kept_unless_replace():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L1(0.5))]
    )
    with pytest.warns(UserWarning, match="replace=True"):
        report = attach(model, NormLoss(0.1))
    assert len(report.skipped) == 1 and isinstance(
        model.layers[0].kernel.regularizer, keras.regularizers.L1
    )
    report = attach(model, NormLoss(0.1), replace=True)
    assert len(report.attached) == 1 and isinstance(model.layers[0].kernel.regularizer, NormLoss)
    assert len(model.losses) == 1


def test_unsupported_layers_warn_or_raise_and_change_nothing():
    model = keras.Sequential(
        [keras.Input((5, 3)), keras.layers.LSTM(4, return_sequences=True), keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match="lstm.*LSTM"):
        attach(model, NormLoss(0.1), on_unsupported="raise")
    assert model.losses == []
    with pytest.warns(UserWarning, match="cannot handle"):
        report = attach(model, NormLoss(0.1))
    assert [a.layer_type for a in report.unsupported] == ["LSTMCell"]  # the cell owns the weights
    assert len(model.losses) == 1


def test_constraint_through_attach_gets_each_layers_axes():
    model = _small_model()
    attach(model, constraint=WeightRescaling())
    assert model.get_layer("up").kernel.constraint.axis == (0, 1, 3)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(np.ones((4, 8, 8, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    up = model.get_layer("up").kernel.numpy()
    np.testing.assert_allclose(
        np.linalg.norm(np.moveaxis(up, 2, 0).reshape(5, -1), axis=1), 1.0, rtol=1e-6
    )


def test_axis_free_regularizer_is_shared():
    model = _small_model()
    report = attach(model, weight_decay(1e-4))
    regs = {id(a.attached[0]) for a in report.attached}
    assert len(regs) == 1 and len(model.losses) == 3


def test_penalty_is_used_by_a_model_that_already_ran():
    model = _small_model()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x, y = np.ones((4, 8, 8, 3), "float32"), np.zeros((4, 2), "float32")
    plain = model.evaluate(x, y, verbose=0)  # traces test_function without penalties
    attach(model, NormLoss(0.1))
    penalized = model.evaluate(x, y, verbose=0)
    assert penalized - plain == pytest.approx(float(sum(model.losses)), rel=1e-4)
    assert float(sum(model.losses)) > 0.01


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "expected a `regularizer`, a `constraint` or both"),
        ({"regularizer": WeightRescaling()}, "is a constraint; pass it as `constraint=`"),
        ({"regularizer": NormLoss(), "on_unsupported": "skip"}, "Received: on_unsupported='skip'"),
        (
            {"regularizer": NormLoss(), "layer_types": "Conv2D"},
            "Received: layer_types=\\('Conv2D',\\)",
        ),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        attach(_small_model(), **kwargs)


def test_parameters_all_decays_every_trainable_weight_as_pytorch_does():
    """`SGD(model.parameters(), weight_decay=wd)` decays BN's gamma and beta and
    every bias too; `parameters="all"` does the same, and the penalty is
    (wd / 2) * sum of squares over all of them."""
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, use_bias=True),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    for v in model.trainable_weights:  # nonzero biases and betas
        v.assign(np.random.default_rng(len(v.path)).normal(size=v.shape))
    report = attach(model, weight_decay(0.02), parameters="all")
    assert len(report.attached) == len(model.trainable_weights) == 6
    expected = 0.01 * sum(float(np.sum(np.square(v.numpy()))) for v in model.trainable_weights)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    bn = model.layers[1]
    assert bn.gamma_regularizer is not None and bn.beta_regularizer is not None  # in the config


def test_parameters_all_survives_keras_round_trip(tmp_path):
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()]
    )
    attach(model, weight_decay(0.02), parameters="all")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert len(loaded.losses) == 4


@pytest.mark.parametrize(
    "kwargs", [dict(regularizer=NormLoss(1e-3)), dict(constraint=WeightRescaling())]
)
def test_parameters_all_refuses_channel_methods(kwargs):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="Invalid value for argument `parameters`"):
        attach(model, parameters="all", **kwargs)


def test_parameters_must_be_kernels_or_all():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="Received: parameters='biases'"):
        attach(model, weight_decay(1e-4), parameters="biases")


def test_a_model_that_is_not_a_keras_model_is_a_clear_type_error():
    """`attach("x", ...)` once raised `AttributeError: _flatten_layers`."""
    with pytest.raises(TypeError, match="expected a built Keras model or layer.*model='oni'"):
        attach("oni", None)


def test_attachs_warnings_point_at_the_callers_line():
    """`place` is split into steps; its warnings still name the line that called `attach`."""
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(0.1))]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attach(model, NormLoss(1e-3))  # the kernel has a regularizer already: skipped, warned
    assert [w.filename for w in caught] == [__file__]
