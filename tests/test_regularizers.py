import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_cases import CASES, build, normloss_gradient_numpy, normloss_numpy

from keras_normloss import NormLoss, oblique_distance, output_channel_axes, weight_decay


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_matches_numpy_for_every_layer_kind(name):
    layer, kernel, as_rows, _ = build(name)
    reg = NormLoss(0.3, axis=output_channel_axes(layer, kernel))
    expected = normloss_numpy(as_rows(kernel.numpy()), 0.3)
    assert float(reg(kernel)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "name", ["Dense", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "EinsumDense-3d"]
)
def test_gradient_is_paper_equation_6(name):
    layer, kernel, as_rows, _ = build(name)
    reg = NormLoss(0.3, axis=output_channel_axes(layer, kernel))
    with tf.GradientTape() as tape:
        loss = reg(kernel)
    grad = tape.gradient(loss, kernel).numpy()
    expected = normloss_gradient_numpy(as_rows(kernel.numpy()), 0.3)
    np.testing.assert_allclose(as_rows(grad), expected, rtol=1e-5, atol=1e-7)


def test_layer_argument_puts_the_penalty_in_model_losses():
    layer = keras.layers.Conv2D(4, 3, kernel_regularizer=NormLoss(0.5))
    layer.build((None, 8, 8, 3))
    k = layer.kernel.numpy()
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(
        normloss_numpy(k.reshape(-1, 4).T, 0.5), rel=1e-5
    )


def test_zero_kernel_has_finite_value_and_zero_gradient():
    kernel = tf.Variable(np.zeros((3, 3, 2, 4), "float32"))
    with tf.GradientTape() as tape:
        loss = NormLoss(0.1)(kernel)
    grad = tape.gradient(loss, kernel).numpy()
    assert float(loss) == pytest.approx(0.1 * 4)  # each empty channel: (1 - 0)**2
    assert np.all(np.isfinite(grad)) and np.all(grad == 0.0)


def test_one_zero_channel_does_not_disturb_the_others():
    w = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    w[:, 1] = 0.0
    kernel = tf.Variable(w)
    with tf.GradientTape() as tape:
        loss = NormLoss(1.0)(kernel)
    grad = tape.gradient(loss, kernel).numpy()
    expected = normloss_gradient_numpy(w[:, [0, 2]].T, 1.0).T
    np.testing.assert_allclose(grad[:, [0, 2]], expected, rtol=1e-5)
    assert np.all(grad[:, 1] == 0.0)


def test_unit_norm_channels_cost_nothing():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(8, 8)))
    assert float(NormLoss(1.0)(q.astype("float32"))) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_kernels_are_computed_in_float32(dtype):
    w = np.random.default_rng(0).normal(size=(3, 3, 8, 16)) * 0.5
    kernel = keras.ops.cast(w, dtype)
    as_float32 = np.asarray(keras.ops.cast(kernel, "float32"))
    loss = NormLoss(1e-3)(kernel)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    expected = normloss_numpy(as_float32.reshape(-1, 16).T, 1e-3)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_policies(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, kernel_regularizer=NormLoss(0.1)),
            keras.layers.Flatten(),
            keras.layers.Dense(2, kernel_regularizer=NormLoss(0.1)),
        ]
    )
    losses = model.losses
    assert [keras.backend.standardize_dtype(l.dtype) for l in losses] == ["float32", "float32"]
    conv_kernel = model.layers[0].kernel.numpy()
    # near the manifold (1 - norm) is small: float32 rounding of the norm
    # shows at ~1e-6 relative, so 1e-5.
    assert float(losses[0]) == pytest.approx(
        normloss_numpy(conv_kernel.reshape(-1, 4).T, 0.1), rel=1e-5
    )
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.ones((4, 6, 6, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "factor, shown",
    [
        (-1, "-1"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("0.1", "'0.1'"),
        (None, "None"),
        (True, "True"),
    ],
)
def test_invalid_factor_raises_with_the_value(factor, shown):
    with pytest.raises(
        ValueError,
        match=rf"Invalid value for argument `factor`: expected a non-negative finite float. Received: factor={shown}",
    ):
        NormLoss(factor)


def test_numpy_and_int_factors_are_stored_as_python_floats():
    assert type(NormLoss(np.float32(0.5)).factor) is float
    assert NormLoss(1).factor == 1.0 and type(NormLoss(1).factor) is float


def test_invalid_axis_raises_at_construction():
    with pytest.raises(ValueError, match=r"Received: axis=\[0, 'a'\]"):
        NormLoss(1e-3, axis=[0, "a"])


def test_axis_out_of_range_raises_when_called():
    with pytest.raises(ValueError, match=r"axis 4 is out of range .* Received: axis=\(0, 4\)"):
        NormLoss(1e-3, axis=(0, 4))(np.ones((3, 3, 2, 2), "float32"))


def test_rank_one_input_raises():
    with pytest.raises(ValueError, match=r"rank >= 2.*Received: axis=None"):
        NormLoss(1e-3)(np.ones((4,), "float32"))


def test_config_round_trip_and_repr():
    reg = NormLoss(2e-3, axis=(0, 1))
    assert reg.get_config() == {"factor": 2e-3, "axis": [0, 1]}
    again = NormLoss.from_config(reg.get_config())
    assert (again.factor, again.axis) == (2e-3, (0, 1))
    assert repr(reg) == "NormLoss(factor=0.002, axis=(0, 1))"


def test_keras_serialize_round_trip():
    reg = NormLoss(5e-4, axis=(0, 1, 3))
    again = keras.regularizers.deserialize(keras.regularizers.serialize(reg))
    assert isinstance(again, NormLoss) and again.get_config() == reg.get_config()


def test_keras_file_round_trip_keeps_the_penalty(tmp_path):
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(3, kernel_regularizer=NormLoss(0.25))]
    )
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    reg = loaded.layers[0].kernel_regularizer
    assert isinstance(reg, NormLoss) and reg.factor == 0.25
    k = loaded.layers[0].kernel.numpy()
    assert len(loaded.losses) == 1
    assert float(loaded.losses[0]) == pytest.approx(normloss_numpy(k.T, 0.25), rel=1e-5)


def test_weight_decay_gradient_is_wd_times_w():
    w = tf.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = weight_decay(1e-2)(w)
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), 1e-2 * w.numpy(), rtol=1e-6)
    assert float(loss) == pytest.approx(0.5e-2 * np.sum(w.numpy().astype("float64") ** 2), rel=1e-6)


def test_weight_decay_is_plain_keras_l2_of_half_the_decay():
    reg = weight_decay(5e-4)
    assert type(reg) is keras.regularizers.L2 and reg.l2 == pytest.approx(2.5e-4)


@pytest.mark.parametrize("wd", [-1e-4, float("nan"), "1e-4"])
def test_weight_decay_rejects_invalid_values(wd):
    with pytest.raises(ValueError, match="Invalid value for argument `wd`.*Received: wd="):
        weight_decay(wd)


def test_short_training_with_normloss_approaches_the_oblique_manifold():
    """NormLoss pulls channel norms to 1 where plain training leaves them.

    With SGD at lr 0.1 and factor 0.5 the norm's time constant is about
    1 / (2 * 0.1 * 0.5) = 10 steps, so 60 steps suffice; the data loss is
    invariant to each channel's scale (BatchNormalization after the conv),
    as in the papers' networks.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, size=(64,))

    def run(regularizer):
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [
                keras.Input((8, 8, 3)),
                keras.layers.Conv2D(16, 3, use_bias=False, kernel_regularizer=regularizer),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(4),
            ]
        )
        kernel = model.layers[0].kernel
        before = float(oblique_distance(kernel))
        model.compile(
            keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        model.fit(x, y, batch_size=16, epochs=15, verbose=0)
        return before, float(oblique_distance(kernel))

    before, with_normloss = run(NormLoss(0.5))
    _, without = run(None)
    assert before > 0.3  # He/Glorot init is far from unit norm for 27 inputs
    assert with_normloss < 0.02 * before
    assert without > 0.5 * before
