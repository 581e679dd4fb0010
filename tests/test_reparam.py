"""WN, ONI and OLM wrappers against NumPy versions of the reference maths.

Every expectation is computed here from the papers' / reference code's
formulas in float64 NumPy (`*_numpy` below); the code under test is not
used to make them.
"""

import functools
import importlib.util
import inspect
import json
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import two_replica_strategy
from layer_cases import CASES, build
from other_backend import run_script

from keras_normloss import methods
from keras_normloss.layers import (
    ONI,
    ONI_PRESETS,
    KernelReparametrization,
    OrthogonalWeightNorm,
    WeightNorm,
    data_dependent_init,
    orthogonal_group_size,
    reparametrize,
)

# ----------------------------------------------------------------------------
# NumPy oracles (float64), on rows Z of shape (out, d), with explicit groups.


def rows_of(kernel):
    """Dense / ConvND layout (Keras docs): (..., in, out) -> (out, d)."""
    kernel = np.asarray(kernel, "float64")
    return kernel.reshape(-1, kernel.shape[-1]).T


def blocks(out, size):
    return [(a, min(a + size, out)) for a in range(0, out, size)]


def weight_norm_numpy(z, g):
    return g[:, None] * z / np.linalg.norm(z, axis=1, keepdims=True)


def oni_numpy(z, iterations, groups, eps=1e-5):
    """ONI_PyTorch/extension/normalization/NormedConv.py, ONINorm.forward."""
    out = np.empty_like(z)
    for a, b in groups:
        zc = z[a:b] - z[a:b].mean(axis=1, keepdims=True)
        s = zc @ zc.T + eps * np.eye(b - a)
        norm_s = np.linalg.norm(s)  # Frobenius
        s = s / norm_s
        bt = np.eye(b - a)
        for _ in range(iterations):
            bt = 1.5 * bt - 0.5 * np.linalg.matrix_power(bt, 3) @ s
        out[a:b] = bt @ zc / np.sqrt(norm_s)
    return out


def olm_numpy(z, groups, eps=1e-5):
    """Centred ZCA whitening: (Zc Zcᵀ + eps I)^(-1/2) Zc, per group."""
    out = np.empty_like(z)
    for a, b in groups:
        zc = z[a:b] - z[a:b].mean(axis=1, keepdims=True)
        lam, u = np.linalg.eigh(zc @ zc.T + eps * np.eye(b - a))
        out[a:b] = u @ np.diag(lam**-0.5) @ u.T @ zc
    return out


def orthogonality_error(w):
    return np.abs(w @ w.T - np.eye(len(w))).max()


def _np(x):
    return keras.ops.convert_to_numpy(x).astype("float64")


def _holds(variables, variable):
    return any(v is variable for v in variables)


def _built(wrapper, input_shape, kernel=None):
    wrapper.build(input_shape)
    if kernel is not None:
        wrapper.layer.kernel.assign(kernel)
    return wrapper


# ----------------------------------------------------------------------------
# WeightNorm


WN_CASES = sorted(name for name in CASES if not name.startswith("SeparableConv"))


@pytest.mark.parametrize("name", WN_CASES)
def test_weight_norm_preserves_function_and_channel_norms_equal_scale(name):
    layer, kernel, as_rows, _ = build(name)
    input_shape = CASES[name][1]
    x = np.random.default_rng(1).normal(size=(2, *input_shape[1:])).astype("float32")
    expected = _np(layer(x))
    v_rows = as_rows(kernel.numpy()).astype("float64")

    wrapped = WeightNorm(layer)
    np.testing.assert_allclose(_np(wrapped(x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(wrapped.scale), np.linalg.norm(v_rows, axis=1), rtol=1e-6)

    g = np.linspace(0.5, 2.0, len(v_rows))
    wrapped.scale.assign(g)
    got = as_rows(_np(wrapped.effective_kernel()))
    np.testing.assert_allclose(got, weight_norm_numpy(v_rows, g), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), g, rtol=1e-5)
    # v itself is never overwritten
    np.testing.assert_array_equal(kernel.numpy(), build(name)[1].numpy())


def test_weight_norm_constant_scale_is_not_trained():
    wrapped = _built(
        WeightNorm(keras.layers.Dense(3), scale_init=1.414, learnable_scale=False), (None, 5)
    )
    assert _holds(wrapped.non_trainable_weights, wrapped.scale)
    assert not _holds(wrapped.trainable_weights, wrapped.scale)
    norms = np.linalg.norm(rows_of(_np(wrapped.effective_kernel())), axis=1)
    np.testing.assert_allclose(norms, 1.414, rtol=1e-6)


# ----------------------------------------------------------------------------
# ONI and OLM


def test_oni_follows_the_reference_newton_iteration_and_improves_with_t():
    # Conv2D 8 -> 32, 3x3: d = 72; groups of 16.
    v = np.random.default_rng(0).normal(size=(3, 3, 8, 32)).astype("float32") * 0.1
    errors = []
    for t in (1, 2, 3, 5, 8):
        layer = _built(
            ONI(keras.layers.Conv2D(32, 3), iterations=t, group_size=16, scale_init=1.0),
            (None, 6, 6, 8),
            v,
        )
        got = rows_of(_np(layer.effective_kernel()))
        expected = oni_numpy(rows_of(v), t, blocks(32, 16))
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)
        errors.append(max(orthogonality_error(got[a:b]) for a, b in blocks(32, 16)))
        # rows of different groups are not orthogonalized against each other
        assert np.abs(got[:16] @ got[16:].T).max() > 1e-2
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3 < errors[0]


def test_oni_scale_multiplies_each_channel_and_presets_are_valid():
    v = np.random.default_rng(2).normal(size=(6, 4)).astype("float32")
    layer = _built(ONI(keras.layers.Dense(4), iterations=5, scale_init=0.8), (None, 6), v)
    expected = 0.8 * oni_numpy(rows_of(v), 5, [(0, 4)])
    np.testing.assert_allclose(
        rows_of(_np(layer.effective_kernel())), expected, rtol=1e-4, atol=1e-5
    )
    assert _holds(layer.trainable_weights, layer.scale)
    for preset in ONI_PRESETS.values():
        assert (
            ONI(keras.layers.Dense(4), **preset).get_config()["iterations"] == preset["iterations"]
        )


def test_olm_rows_are_orthonormal_and_match_centred_zca():
    # Conv2D 4 -> 24, 3x3: d = 36; group 64 is clipped to the 24 rows.
    v = np.random.default_rng(0).normal(size=(3, 3, 4, 24)).astype("float32")
    layer = _built(OrthogonalWeightNorm(keras.layers.Conv2D(24, 3)), (None, 6, 6, 4), v)
    got = rows_of(_np(layer.effective_kernel()))
    assert orthogonality_error(got) < 1e-4
    np.testing.assert_allclose(got, olm_numpy(rows_of(v), [(0, 24)]), atol=1e-5)
    # centred: every row sums to zero
    np.testing.assert_allclose(got.sum(axis=1), 0.0, atol=1e-5)
    assert not _holds(layer.trainable_weights, layer.scale)  # the Torch OLM has no scale


@pytest.mark.parametrize("group_size", [None, 64, 16])
def test_rank_deficient_groups_are_clipped_to_fan_in_minus_one(group_size):
    # 1x1 conv 16 -> 32: d = 16, so centred rows span 15 dimensions. As one
    # group (the reference PyTorch OWN, or ONI without its column switch) at
    # least 17 channels would be dead or NaN; here groups hold 15 rows. In
    # float64 with a tiny eps, to see the rule itself.
    v = np.random.default_rng(3).normal(size=(1, 1, 16, 32))
    z = rows_of(v)
    naive = olm_numpy(z, [(0, 32)])
    assert np.linalg.svd(naive, compute_uv=False).min() < 1e-2  # the trap itself
    assert orthogonal_group_size(32, 16, group_size) == 15
    groups = blocks(32, 15)

    oni = ONI(keras.layers.Conv2D(32, 1, dtype="float64"), group_size=group_size, scale_init=1.0)
    got = rows_of(_np(_built(oni, (None, 3, 3, 16), v).effective_kernel()))
    np.testing.assert_allclose(got, oni_numpy(z, 5, groups), rtol=1e-8, atol=1e-10)
    # no dead channel, though T=5 leaves a near-square group far from orthonormal
    assert np.linalg.norm(got, axis=1).min() > 0.6

    olm = OrthogonalWeightNorm(
        keras.layers.Conv2D(32, 1, dtype="float64"), group_size=group_size, eps=1e-12
    )
    got = rows_of(_np(_built(olm, (None, 3, 3, 16), v).effective_kernel()))
    np.testing.assert_allclose(got, olm_numpy(z, groups, eps=1e-12), atol=1e-8)
    for a, b in groups:
        assert orthogonality_error(got[a:b]) < 1e-6


@pytest.mark.parametrize("cls", [ONI, OrthogonalWeightNorm])
def test_rank_deficient_layer_in_float32_is_finite_with_finite_gradients(cls):
    v = np.random.default_rng(3).normal(size=(1, 1, 16, 32)).astype("float32")
    layer = _built(cls(keras.layers.Conv2D(32, 1), group_size=None), (None, 3, 3, 16), v)
    got = rows_of(_np(layer.effective_kernel()))
    # group 2 here has eigenvalues from 5e-5 to 50: eps = 1e-5 and float32
    # round-off shorten its weakest direction, but no channel dies
    assert np.all(np.isfinite(got)) and np.linalg.norm(got, axis=1).min() > 0.6
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 3, 3, 16)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == (3 if cls is ONI else 2)  # OLM's scale is fixed by default
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


# ----------------------------------------------------------------------------
# Gradients: autodiff of the wrapper vs central differences of the NumPy maths


def _orthonormal_centred_rows(out, d, seed):
    a = np.random.default_rng(seed).normal(size=(d, out))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    return q.T  # rows orthonormal and centred: Zc Zcᵀ = I, every eigenvalue equal


GRADIENT_CASES = {
    "WeightNorm": (
        lambda: WeightNorm(keras.layers.Dense(4, dtype="float64"), scale_init=1.3),
        lambda z, g: weight_norm_numpy(z, g),
        None,
    ),
    "ONI": (
        lambda: ONI(
            keras.layers.Dense(4, dtype="float64"), iterations=3, group_size=3, scale_init=1.2
        ),
        lambda z, g: g[:, None] * oni_numpy(z, 3, [(0, 3), (3, 4)]),
        None,
    ),
    "OLM": (
        lambda: OrthogonalWeightNorm(
            keras.layers.Dense(4, dtype="float64"), scale_init=0.9, learnable_scale=True
        ),
        lambda z, g: g[:, None] * olm_numpy(z, [(0, 4)]),
        None,
    ),
    # every eigenvalue of Zc Zcᵀ equal: autodiff through eigh divides by zero
    "OLM-degenerate": (
        lambda: OrthogonalWeightNorm(keras.layers.Dense(4, dtype="float64"), learnable_scale=True),
        lambda z, g: g[:, None] * olm_numpy(z, [(0, 4)]),
        _orthonormal_centred_rows(4, 6, 0),
    ),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
def test_gradients_match_central_differences_of_the_reference_maths(name):
    make, oracle, rows = GRADIENT_CASES[name]
    rng = np.random.default_rng(5)
    v = rng.normal(size=(6, 4)) if rows is None else rows.T
    x = rng.normal(size=(3, 6))
    r = rng.normal(size=(3, 4))
    layer = _built(make(), (None, 6), v)
    g0 = _np(layer.scale)

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.constant(x)) * r)
    grad_v, grad_g = tape.gradient(loss, [layer.layer.kernel, layer.scale])

    def loss_numpy(v_, g_):
        return np.sum((x @ oracle(v_.T, g_).T + _np(layer.layer.bias)) * r)

    h = 1e-6
    fd_v = np.zeros_like(v)
    for i in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[i] = h
        fd_v[i] = (loss_numpy(v + e, g0) - loss_numpy(v - e, g0)) / (2 * h)
    fd_g = np.array(
        [(loss_numpy(v, g0 + h * e) - loss_numpy(v, g0 - h * e)) / (2 * h) for e in np.eye(4)]
    )
    assert float(loss) == pytest.approx(loss_numpy(v, g0), rel=1e-10)
    np.testing.assert_allclose(grad_v.numpy(), fd_v, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_g.numpy(), fd_g, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------
# Training machinery: one model with all three wrappers

_MODEL_CODE = """
def make_model(init="glorot_uniform"):
    inputs = keras.Input((6, 6, 3))
    h = WeightNorm(keras.layers.Conv2D(8, 3, activation="relu", kernel_initializer=init))(inputs)
    h = ONI(keras.layers.Conv2D(12, 3, kernel_initializer=init), iterations=3, group_size=5)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = OrthogonalWeightNorm(
        keras.layers.Dense(4, kernel_initializer=init), group_size=3, learnable_scale=True
    )(h)
    return keras.Model(inputs, outputs)
"""
_namespace = {
    "keras": keras,
    "WeightNorm": WeightNorm,
    "ONI": ONI,
    "OrthogonalWeightNorm": OrthogonalWeightNorm,
}
exec(_MODEL_CODE, _namespace)
make_model = _namespace["make_model"]


def _data(n=8):
    rng = np.random.default_rng(7)
    return rng.normal(size=(n, 6, 6, 3)).astype("float32"), rng.normal(size=(n, 4)).astype(
        "float32"
    )


def _compiled(weights, **compile_kwargs):
    model = make_model()
    model.set_weights(weights)
    model.compile(keras.optimizers.SGD(0.1), "mse", **compile_kwargs)
    return model


def test_save_load_stores_each_variable_once_and_reproduces_predictions(tmp_path):
    x, y = _data()
    model = _compiled(make_model().get_weights())
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # scales no longer at their init
    path = tmp_path / "model.keras"
    model.save(path)

    with zipfile.ZipFile(path) as archive:
        archive.extract("model.weights.h5", tmp_path)
    stored = []
    with h5py.File(tmp_path / "model.weights.h5") as h5:
        h5["layers"].visititems(
            lambda name, obj: stored.append(obj.shape) if isinstance(obj, h5py.Dataset) else None
        )
    assert sorted(stored) == sorted(tuple(w.shape) for w in model.weights)
    assert len(stored) == 3 * 3  # scale, kernel, bias per wrapper

    loaded = keras.models.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers][1:3] == ["WeightNorm", "ONI"]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("cls", [WeightNorm, ONI, OrthogonalWeightNorm])
def test_config_round_trip(cls):
    layer = cls(keras.layers.Conv2D(4, 3), scale_init=0.7, learnable_scale=False)
    config = layer.get_config()
    clone = cls.from_config(dict(config))  # Wrapper.from_config pops "layer"
    assert clone.get_config() == config
    assert (
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)).name
        == layer.name
    )


def test_a_training_step_updates_v_and_scale_through_the_normalization():
    x, y = _data()
    model = _compiled(make_model().get_weights())
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    after = model.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(before, after) if a.ndim > 1)
    wn = model.layers[1]
    # the kernel used is recomputed from the updated v and g
    np.testing.assert_allclose(
        np.linalg.norm(rows_of(_np(wn.effective_kernel())), axis=1), _np(wn.scale), rtol=1e-5
    )


def test_jit_compiled_fit_step_equals_the_plain_step():
    x, y = _data()
    initial = make_model().get_weights()
    plain = _compiled(initial)
    xla = _compiled(initial, jit_compile=True)
    plain.fit(x, y, epochs=1, batch_size=8, verbose=0)
    xla.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(plain.get_weights(), xla.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_fit_step_equals_one_device():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py should have made 2 logical CPUs"
    x, y = _data(16)
    initial = make_model().get_weights()
    single = _compiled(initial)
    single.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    with two_replica_strategy().scope():
        mirrored = _compiled(initial)
    mirrored.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b, w0 in zip(single.get_weights(), mirrored.get_weights(), initial):
        assert not np.allclose(a, w0)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)


_JAX_SCRIPT = (
    r"""
import json, sys
import numpy as np
import keras
from keras_normloss.layers import ONI, OrthogonalWeightNorm, WeightNorm
"""
    + _MODEL_CODE
    + r"""
data = json.loads(sys.stdin.read())
# a constant initializer: on a busy CPU, XLA takes seconds to compile JAX's
# random initializers for each new shape, and the weights are replaced anyway
model = make_model("ones")
model.set_weights([np.asarray(w, "float32") for w in data["weights"]])
x, y = np.asarray(data["x"], "float32"), np.asarray(data["y"], "float32")
forward = np.asarray(model(x))
model.compile(keras.optimizers.SGD(0.1), "mse")
history = model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
print(json.dumps({
    "backend": keras.backend.backend(),
    "forward": forward.tolist(),
    "after_step": [np.asarray(w).tolist() for w in model.get_weights()],
    "fit_loss": history.history["loss"],
}))
"""
)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
@pytest.mark.subprocess
def test_jax_backend_gives_the_tensorflow_forward_and_training_step():
    """The same weights give the same outputs, and one SGD step (so the same
    gradients, through ONI's iteration and OLM's custom eigh gradient) on JAX."""
    x, y = _data()
    initial = make_model().get_weights()
    out = run_script(
        _JAX_SCRIPT,
        "jax",
        stdin=json.dumps(
            {"weights": [w.tolist() for w in initial], "x": x.tolist(), "y": y.tolist()}
        ),
    )
    model = _compiled(initial)
    np.testing.assert_allclose(out["forward"], _np(model(x)), rtol=1e-4, atol=1e-5)
    history = model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    assert out["fit_loss"][0] == pytest.approx(history.history["loss"][0], rel=1e-5)
    for got, expected, w0 in zip(out["after_step"], model.get_weights(), initial):
        assert not np.allclose(expected, w0)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------
# Data-dependent initialization (Salimans & Kingma; openai/weightnorm)


def test_data_dependent_init_gives_unit_pre_activations_layer_by_layer():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            WeightNorm(keras.layers.Conv2D(5, 3, activation="relu")),
            keras.layers.Flatten(),
            WeightNorm(keras.layers.Dense(4)),
        ]
    )
    x = np.random.default_rng(8).normal(1.0, 3.0, size=(64, 6, 6, 3)).astype("float32")
    conv, dense = model.layers[0], model.layers[2]
    v = conv.layer.kernel.numpy().astype("float64")

    assert data_dependent_init(model, x) == [conv.name, dense.name]

    # oracle for the first layer: t = x * v/||v||, g = 1/sqrt(var t + 1e-8), b = -mean(t) g
    patches = np.lib.stride_tricks.sliding_window_view(x.astype("float64"), (3, 3), axis=(1, 2))
    t = np.einsum("nhwcij,ijco->nhwo", patches, v / np.linalg.norm(rows_of(v), axis=1))
    g = 1.0 / np.sqrt(t.reshape(-1, 5).var(axis=0) + 1e-8)
    np.testing.assert_allclose(_np(conv.scale), g, rtol=1e-4)
    np.testing.assert_allclose(
        _np(conv.layer.bias), -t.reshape(-1, 5).mean(axis=0) * g, rtol=1e-4, atol=1e-5
    )

    # every layer's pre-activations on this batch: mean 0, std 1 per channel
    w1, b1 = _np(conv.effective_kernel()), _np(conv.layer.bias)
    pre1 = np.einsum("nhwcij,ijco->nhwo", patches, w1) + b1
    flat = np.maximum(pre1, 0).reshape(len(x), -1)
    pre2 = flat @ _np(dense.effective_kernel()) + _np(dense.layer.bias)
    for pre in (pre1.reshape(-1, 5), pre2):
        np.testing.assert_allclose(pre.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(pre.std(axis=0), 1.0, rtol=1e-4)
    # the model itself was only initialised, not changed otherwise
    np.testing.assert_array_equal(conv.layer.kernel.numpy(), v.astype("float32"))


# ----------------------------------------------------------------------------
# reparametrize


def _functional_model():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, name="stem")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.DepthwiseConv2D(3, name="dw")(h)
    h = keras.layers.SeparableConv2D(6, 1, name="sep")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    head = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu", name="hidden")], name="head"
    )
    h = head(h)
    outputs = keras.layers.Dense(3, name="classifier")(h)
    return keras.Model(inputs, outputs)


def test_reparametrize_keeps_the_function_for_weight_norm_and_reports_every_layer():
    model = _functional_model()
    x = np.random.default_rng(9).normal(size=(4, 8, 8, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    original = model.get_weights()

    new, report = reparametrize(model, WeightNorm, where=lambda layer: layer.name != "classifier")

    assert sorted(e.name for e in report.wrapped) == ["dw", "hidden", "stem"]
    left = {e.name: e.reason for e in report.left}
    assert left["classifier"] == "excluded by `where`"
    assert "SeparableConv2D" in left["sep"]
    assert "bn" not in left  # no weight matrix: copied without comment
    assert "wrapped 3 layers" in str(report)
    np.testing.assert_allclose(new.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert isinstance(new.get_layer("head").layers[0], WeightNorm)

    # a copy: training it leaves the original alone
    new.compile(keras.optimizers.SGD(0.1), "mse")
    new.fit(x, np.zeros((4, 3)), verbose=0)
    for a, b in zip(model.get_weights(), original):
        np.testing.assert_array_equal(a, b)


def test_reparametrize_with_oni_reports_unsupported_layers():
    model = _functional_model()
    new, report = reparametrize(model, functools.partial(ONI, iterations=2, group_size=None))
    assert sorted(e.name for e in report.wrapped) == ["classifier", "hidden", "stem"]
    left = {e.name: e.reason for e in report.left}
    assert "DepthwiseConv2D" in left["dw"] and "SeparableConv2D" in left["sep"]
    stem = new.get_layer("oni_stem")
    assert stem.iterations == 2
    # the copy starts from the original kernel, orthogonalized (the default `init`)
    original = rows_of(model.get_layer("stem").kernel.numpy())
    np.testing.assert_allclose(
        rows_of(stem.layer.kernel.numpy()), oni_numpy(original, 10, [(0, 8)], eps=0.0), atol=1e-5
    )
    assert np.all(np.isfinite(new(np.ones((1, 8, 8, 3), "float32"))))
    kept, _ = reparametrize(model, functools.partial(ONI, init="keep"))
    np.testing.assert_array_equal(
        kept.get_layer("oni_stem").layer.kernel.numpy(), model.get_layer("stem").kernel.numpy()
    )


def test_reparametrize_sequential_stem_only_then_skips_wrapped_layers():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, name="stem"),
            keras.layers.Conv2D(4, 3, name="block"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="classifier"),
        ]
    )
    x = np.random.default_rng(12).normal(size=(2, 6, 6, 3)).astype("float32")
    # "OLM-L1": OLM on the first convolution only
    olm_l1, report = reparametrize(
        model, OrthogonalWeightNorm, where=lambda layer: layer.name == "stem"
    )
    assert isinstance(olm_l1, keras.Sequential)
    assert [e.name for e in report.wrapped] == ["stem"]
    assert {e.name: e.reason for e in report.left} == {
        "block": "excluded by `where`",
        "classifier": "excluded by `where`",
    }
    stem = rows_of(_np(olm_l1.layers[0].effective_kernel()))
    np.testing.assert_allclose(
        stem, olm_numpy(rows_of(model.layers[0].kernel.numpy()), [(0, 4)]), atol=1e-5
    )

    again, report = reparametrize(olm_l1, WeightNorm)
    assert [e.name for e in report.wrapped] == ["block", "classifier"]
    assert "already reparametrized" in report.left[0].reason
    np.testing.assert_allclose(_np(again(x)), _np(olm_l1(x)), rtol=1e-5, atol=1e-6)


def test_reparametrize_a_keras_applications_model():
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10
    )
    x = np.random.default_rng(10).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = _np(model(x, training=False))
    new, report = reparametrize(model, WeightNorm)
    kinds = {e.layer_type for e in report.wrapped}
    assert kinds == {"Conv2D", "DepthwiseConv2D", "Dense"} and not report.left
    assert len(report.wrapped) == sum(
        isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))
        for layer in model.layers
    )
    np.testing.assert_allclose(_np(new(x, training=False)), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------
# Details and errors


def test_inner_activity_regularization_is_kept():
    layer = WeightNorm(keras.layers.Dense(3, activity_regularizer=keras.regularizers.L2(0.1)))
    x = np.random.default_rng(11).normal(size=(4, 5)).astype("float32")
    y = _np(layer(x))
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(0.1 * np.sum(y**2) / 4, rel=1e-5)


def test_mixed_bfloat16_orthogonalizes_in_float32():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    layer = OrthogonalWeightNorm(keras.layers.Conv2D(8, 3))
    y = layer(np.ones((1, 5, 5, 3), "float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert layer.layer.kernel.dtype == "float32" and np.all(np.isfinite(_np(y)))
    assert orthogonality_error(rows_of(_np(layer.effective_kernel()))) < 3e-2  # bfloat16 output


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ONI(keras.layers.Dense(4), iterations=0), "`iterations`.*iterations=0"),
        (lambda: ONI(keras.layers.Dense(4), group_size=1.5), "`group_size`.*group_size=1.5"),
        (lambda: ONI(keras.layers.Dense(4), eps=-1.0), "`eps`.*eps=-1.0"),
        (lambda: OrthogonalWeightNorm(keras.layers.Dense(4), scale_init=0.0), "`scale_init`"),
        (lambda: WeightNorm(keras.layers.Dense(4), scale_init=-1.0), "`scale_init`"),
        (lambda: WeightNorm(keras.layers.Dense(4), learnable_scale="yes"), "`learnable_scale`"),
        (lambda: WeightNorm("dense"), "expected a keras.layers.Layer"),
        (lambda: WeightNorm(keras.layers.SeparableConv2D(4, 3)), "of type SeparableConv2D"),
        (lambda: WeightNorm(keras.layers.BatchNormalization()), "of type BatchNormalization"),
        (lambda: WeightNorm(WeightNorm(keras.layers.Dense(2))), "already reparametrized"),
        (lambda: ONI(keras.layers.DepthwiseConv2D(3)), "of type DepthwiseConv2D"),
        (lambda: OrthogonalWeightNorm(keras.layers.Conv2D(4, 3, groups=2)), "grouped convolution"),
        (lambda: ONI(keras.layers.Dense(4))(np.ones((2, 1), "float32")), "fan-in of 1"),
    ],
)
def test_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_clear_errors_of_the_functions():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="at least one WeightNorm"):
        data_dependent_init(model, np.ones((2, 3)))
    with pytest.raises(ValueError, match="`init_scale`"):
        data_dependent_init(model, np.ones((2, 3)), init_scale=0)
    with pytest.raises(ValueError, match="`wrapper`"):
        reparametrize(model, "oni")
    with pytest.raises(ValueError, match="`where`"):
        reparametrize(model, WeightNorm, where=True)
    with pytest.raises(ValueError, match="Functional or Sequential"):
        reparametrize(keras.layers.Dense(2), WeightNorm)
    with pytest.raises(ValueError, match="not built"):
        WeightNorm(keras.layers.Dense(2)).effective_kernel()


PUBLIC = [
    KernelReparametrization,
    WeightNorm,
    ONI,
    OrthogonalWeightNorm,
    data_dependent_init,
    orthogonal_group_size,
    reparametrize,
    KernelReparametrization.effective_kernel,
]


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__qualname__)
def test_public_names_have_summary_args_and_example(obj):
    doc = inspect.getdoc(obj)
    summary = doc.splitlines()[0]
    assert summary.endswith(".") and len(summary) <= 100, summary
    assert "Example:" in doc and "```python" in doc
    if [p for p in inspect.signature(obj).parameters if p != "self"]:
        assert "Args:" in doc


# ----------------------------------------------------------------------------
# ONI's start (`init`): the Torch CIFAR reference orthogonalizes v at
# construction (`reset_centered_orthogonal`: centred rows, 10 Newton steps, no
# eps; ONI_Torch/modules/Spatial_Weight_DBN_PowerIter_F2.lua l.103-156); the
# PyTorch ImageNet models keep their He-normal v.


def oni_reference_start_numpy(z, groups):
    """`reset_centered_orthogonal`: the ONI map with nIter = 10 and no eps."""
    return oni_numpy(z, 10, groups, eps=0.0)


def _he(seed):
    # as keras_normloss.models draw conv kernels: He, fan_out, not truncated, seeded per layer
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=seed)


def _cifar_like_model(size=32):
    """A stem 3 -> 16 (d = 27), a 3x3 conv 16 -> 16 (d = 144) and one 16 -> 64 (a group of 64)."""
    inputs = keras.Input((size, size, 3))
    h = inputs
    for i, (name, filters, strides) in enumerate(
        [("stem", 16, 1), ("conv16", 16, 1), ("conv64", 64, 2)]
    ):
        h = keras.layers.Conv2D(
            filters, 3, strides, "same", use_bias=False, kernel_initializer=_he(i), name=name
        )(h)
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(h))


def _oni_layers(model):
    return {layer.layer.name: layer for layer in model.layers if isinstance(layer, ONI)}


def test_oni_method_starts_v_from_the_reference_orthogonal_start():
    model = _cifar_like_model()
    wrapped = _oni_layers(methods.apply(model, "oni").model)
    assert sorted(wrapped) == ["conv16", "conv64", "stem"]
    for name, layer in wrapped.items():
        assert layer.init == "orthogonal"
        z = rows_of(model.get_layer(name).kernel.numpy())
        groups = blocks(len(z), 64)
        expected = oni_reference_start_numpy(z, groups)
        v = rows_of(_np(layer.layer.kernel))
        np.testing.assert_allclose(v, expected, atol=2e-5)
        np.testing.assert_allclose(v.sum(axis=1), 0.0, atol=1e-5)  # centred
        # 10 Newton steps: orthonormal, unit-length rows (the reference's
        # float64 iteration, reproduced in float32)
        for a, b in groups:
            assert orthogonality_error(v[a:b]) < 1e-5


def test_oni_method_effective_rows_are_orthonormal_from_the_first_step():
    model = _cifar_like_model()
    wrapped = _oni_layers(methods.apply(model, "oni").model)
    errors = {}
    for name, layer in wrapped.items():
        z = rows_of(model.get_layer(name).kernel.numpy())
        groups = blocks(len(z), 64)
        w = rows_of(_np(layer.effective_kernel())) / 1.414
        start = oni_reference_start_numpy(z, groups)
        np.testing.assert_allclose(w, oni_numpy(start, 5, groups), atol=2e-5)
        errors[name] = max(orthogonality_error(w[a:b]) for a, b in groups)
        # from the raw He kernel (`init="keep"`) instead: the 0.22 on the stem
        errors[name + " kept"] = max(
            orthogonality_error(oni_numpy(z, 5, groups)[a:b]) for a, b in groups
        )
    assert errors["stem kept"] > 0.05 and errors["stem"] < 1e-4, errors
    assert errors["conv16"] < 1e-4, errors
    # a group of 64 at T = 5: exactly orthogonal rows of one common length
    # (5 steps from Ŝ = I/8 leave the scalar iteration at 0.99925 of 1)
    assert errors["conv64"] < 2e-3 < errors["conv64 kept"], errors
    w = rows_of(_np(wrapped["conv64"].effective_kernel())) / 1.414
    gram = w @ w.T
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-4
    np.testing.assert_allclose(np.diag(gram), np.diag(gram).mean(), atol=1e-4)


def test_oni_method_on_imagenet_inputs_keeps_the_he_normal_kernel():
    model = _cifar_like_model(size=64)  # >= 64 pixels: the ImageNet setting, T = 2
    wrapped = _oni_layers(methods.apply(model, "oni").model)
    for name, layer in wrapped.items():
        assert (layer.init, layer.iterations) == ("keep", 2)
        np.testing.assert_array_equal(layer.layer.kernel.numpy(), model.get_layer(name).kernel)


def test_orthogonal_start_ignores_the_kernel_scale_and_is_reproducible():
    # the reference orthogonalizes torch.randn; He-normal is the same draw
    # times a constant, and the start does not depend on the constant
    def start(init):
        layer = _built(ONI(keras.layers.Conv2D(16, 3, kernel_initializer=init)), (None, 8, 8, 3))
        return _np(layer.layer.kernel)

    he, unit, again = (
        start(_he(3)),
        start(keras.initializers.RandomNormal(0.0, 1.0, seed=3)),
        start(_he(3)),
    )
    assert orthogonality_error(rows_of(he)) < 1e-2
    np.testing.assert_allclose(he, unit, atol=1e-5)
    np.testing.assert_array_equal(he, again)


def test_orthogonal_start_in_float32_matches_the_float64_reference():
    # The reference computes its start in float64 (Torch's default tensor
    # type); its uncoupled iteration, run in float32, drifts or blows up on
    # stem-sized groups (16 x 27). Ten stems and a 1x1 conv 16 -> 32 (groups
    # of 15 rows in d = 16, the worst conditioned).
    for seed in range(10):
        for filters, size, channels in [(16, 3, 3), (32, 1, 16)]:
            layer = _built(
                ONI(keras.layers.Conv2D(filters, size, kernel_initializer=_he(seed))),
                (None, 8, 8, channels),
            )
            groups = blocks(filters, orthogonal_group_size(filters, size * size * channels, 64))
            z = rows_of(_he(seed)((size, size, channels, filters)))  # a seeded draw repeats
            v = rows_of(_np(layer.layer.kernel))
            np.testing.assert_allclose(v, oni_reference_start_numpy(z, groups), atol=5e-5)


def test_constant_kernel_starts_at_zero_rather_than_nan():
    layer = _built(ONI(keras.layers.Conv2D(4, 3, kernel_initializer="ones")), (None, 5, 5, 3))
    np.testing.assert_array_equal(_np(layer.layer.kernel), 0.0)
    assert np.all(np.isfinite(_np(layer(np.ones((1, 5, 5, 3), "float32")))))


def test_oni_init_is_validated_serialized_and_in_every_preset():
    with pytest.raises(ValueError, match=r"`init`.*\('orthogonal', 'keep'\).*init='he'"):
        ONI(keras.layers.Dense(4), init="he")
    layer = ONI(keras.layers.Dense(4), init="keep")
    assert ONI.from_config(layer.get_config()).init == "keep"
    assert {name: p["init"] for name, p in ONI_PRESETS.items()} == {
        "cifar_resnet_no_bn": "orthogonal",
        "cifar_vgg_no_bn": "orthogonal",
        "imagenet_resnet": "keep",
    }
