import keras
import numpy as np
import pytest
from layer_cases import CASES, build

from keras_normloss import WeightRescaling, output_channel_axes


@pytest.mark.parametrize("name", sorted(CASES))
def test_rescales_every_channel_to_unit_norm(name):
    layer, kernel, as_rows, _ = build(name)
    before = as_rows(kernel.numpy())
    after = as_rows(np.asarray(WeightRescaling(output_channel_axes(layer, kernel))(kernel)))
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, rtol=1e-6)
    # a rescaling, not a rotation: each channel keeps its direction
    np.testing.assert_allclose(
        after * np.linalg.norm(before, axis=1, keepdims=True), before, rtol=1e-5, atol=1e-6
    )


def test_zero_channel_stays_zero():
    w = np.ones((3, 3), "float32")
    w[:, 2] = 0.0
    out = np.asarray(WeightRescaling()(w))
    np.testing.assert_allclose(out[:, :2], 1 / np.sqrt(3), rtol=1e-6)
    assert np.all(out[:, 2] == 0.0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_kernels_keep_their_dtype(dtype):
    w = keras.ops.cast(np.random.default_rng(0).normal(size=(6, 4)), dtype)
    out = WeightRescaling()(w)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    norms = np.linalg.norm(np.asarray(keras.ops.cast(out, "float32")), axis=0)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-2)


def test_optimizer_applies_it_after_each_step():
    model = keras.Sequential(
        [keras.Input((3, 3, 2)), keras.layers.Conv2D(4, 3, kernel_constraint=WeightRescaling())]
    )
    model.compile(keras.optimizers.SGD(0.5), "mse")
    model.fit(np.ones((8, 3, 3, 2)), np.ones((8, 1, 1, 4)), epochs=1, verbose=0)
    k = model.layers[0].kernel.numpy()
    np.testing.assert_allclose(np.linalg.norm(k.reshape(-1, 4), axis=0), 1.0, rtol=1e-6)


def test_config_serialize_and_repr():
    c = WeightRescaling(axis=(0, 1))
    assert c.get_config() == {"axis": [0, 1]}
    again = keras.constraints.deserialize(keras.constraints.serialize(c))
    assert isinstance(again, WeightRescaling) and again.axis == (0, 1)
    assert repr(c) == "WeightRescaling(axis=(0, 1))"


def test_invalid_axis_raises():
    with pytest.raises(ValueError, match=r"Received: axis='x'"):
        WeightRescaling("x")
