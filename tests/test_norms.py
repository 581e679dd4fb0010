import keras
import numpy as np
import pytest
from layer_cases import CASES, build

from keras_normloss import (
    UnsupportedLayerError,
    channel_norms,
    layer_kernels,
    oblique_distance,
    output_channel_axes,
)


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_channel_axes_matches_the_layout_table(name):
    layer, kernel, _, expected_axes = build(name)
    assert output_channel_axes(layer, kernel) == expected_axes


@pytest.mark.parametrize("name", sorted(CASES))
def test_channel_norms_match_numpy(name):
    layer, kernel, as_rows, _ = build(name)
    expected = np.linalg.norm(as_rows(kernel.numpy()), axis=1)
    got = np.asarray(channel_norms(kernel, output_channel_axes(layer, kernel))).reshape(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_channel_norms_default_is_all_but_last_axis():
    kernel = np.ones((3, 3, 4, 8), "float32")
    np.testing.assert_allclose(channel_norms(kernel), np.full(8, 6.0), rtol=1e-7)


def test_channel_norms_of_a_zero_kernel_are_finite_and_near_zero():
    norms = np.asarray(channel_norms(np.zeros((3, 2), "float32")))
    assert np.all(np.isfinite(norms)) and np.all(norms < 1e-14)


def test_oblique_distance_is_zero_on_the_manifold_and_matches_numpy():
    assert float(oblique_distance(np.eye(4, dtype="float32"))) == pytest.approx(0.0, abs=1e-7)
    w = np.random.default_rng(1).normal(size=(10, 6)).astype("float32")
    expected = np.mean(np.abs(np.linalg.norm(w, axis=0) - 1.0))
    assert float(oblique_distance(w)) == pytest.approx(expected, rel=1e-6)


def test_separable_conv_has_two_kernels_and_needs_one_named():
    layer, _, _, _ = build("SeparableConv2D-depthwise")
    assert [s.name for s in layer_kernels(layer)] == ["depthwise_kernel", "pointwise_kernel"]
    assert output_channel_axes(layer, "pointwise_kernel") == (0, 1, 2)
    with pytest.raises(ValueError, match="Received: kernel=None"):
        output_channel_axes(layer)


def test_kernel_of_another_layer_is_rejected():
    layer, _, _, _ = build("Dense")
    other, other_kernel, _, _ = build("Conv2D")
    with pytest.raises(ValueError, match="Invalid value for argument `kernel`"):
        output_channel_axes(layer, other_kernel)


def test_unbuilt_conv_layer_knows_its_axes():
    assert output_channel_axes(keras.layers.Conv3DTranspose(4, 3)) == (0, 1, 2, 4)
    assert output_channel_axes(keras.layers.DepthwiseConv2D(3)) == (0, 1)


@pytest.mark.parametrize(
    "layer",
    [keras.layers.BatchNormalization(), keras.layers.LSTM(3), keras.layers.Embedding(5, 3)],
    ids=["BatchNormalization", "LSTM", "Embedding"],
)
def test_layers_without_output_channels_are_unsupported(layer):
    assert layer_kernels(layer) == []
    with pytest.raises(UnsupportedLayerError, match="Supported: Dense"):
        output_channel_axes(layer)


def test_einsum_dense_without_contracted_kernel_axis_is_unsupported():
    layer = keras.layers.EinsumDense("ab,b->ab", output_shape=(4,))
    layer.build((None, 4))
    with pytest.raises(UnsupportedLayerError, match="not well defined|contracted"):
        layer_kernels(layer)


def test_lora_dense_is_unsupported():
    layer = keras.layers.Dense(4)
    layer.build((None, 3))
    layer.enable_lora(2)
    with pytest.raises(UnsupportedLayerError, match="LoRA"):
        layer_kernels(layer)


@pytest.mark.parametrize(
    "axis, message",
    [
        (5, r"axis 5 is out of range for a kernel of rank 2 \(shape \(3, 4\)\). Received: axis=5"),
        ((0, -2), r"names the same axis twice"),
        ("0", r"expected None, an int or a non-empty tuple of distinct ints. Received: axis='0'"),
        ((), r"Received: axis=\(\)"),
        ((0, 0), r"distinct ints. Received: axis=\(0, 0\)"),
        (1.0, r"Received: axis=1.0"),
    ],
)
def test_invalid_axis_raises_with_the_value(axis, message):
    with pytest.raises(ValueError, match=message):
        channel_norms(np.ones((3, 4), "float32"), axis)


def test_rank_one_input_with_default_axis_raises():
    with pytest.raises(ValueError, match=r"rank >= 2.*shape \(4,\).*Received: axis=None"):
        channel_norms(np.ones((4,), "float32"))
