"""SoftOrthogonality and SRIP (Bansal et al., NeurIPS 2018) against NumPy oracles.

The oracles transcribe the reference (VITA-Group/Orthogonality-in-CNNs,
Wide-Resnet/train_n.py, `l2_reg_ortho`): W = the kernel as (fan_in, C_out),
the Gram matrix on the smaller side, SRIP's σ² from two products with
A = Gram − I, started from b ~ U[0, 1) (here NumPy's generator at seed 0).
"""

import importlib.util
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from other_backend import run_script

from keras_normloss import methods
from keras_normloss.regularizers.penalties import SRIP, SoftOrthogonality, power_iteration_start
from keras_normloss.training import presets

# (kernel shape, axis, NumPy view as the (fan_in, C_out) matrix)
KERNELS = {
    "conv2d-3x3x4x8": ((3, 3, 4, 8), None, lambda k: k.reshape(-1, k.shape[-1])),
    "dense-12x5": ((12, 5), None, lambda k: k),  # fan_in > C_out: WᵀW
    "dense-5x12": ((5, 12), None, lambda k: k),  # fan_in < C_out: WWᵀ
    "conv2d-transpose": (
        (3, 3, 6, 2),  # (*k, filters, in): the filters are axis 2
        (0, 1, 3),
        lambda k: np.moveaxis(k, 2, -1).reshape(-1, k.shape[2]),
    ),
}


def _kernel(shape, seed=0, scale=0.3):
    return np.random.default_rng(seed).normal(size=shape) * scale


def _gram_minus_identity(w):
    fan_in, channels = w.shape
    gram = w @ w.T if channels > fan_in else w.T @ w
    return gram - np.eye(len(gram))


def _so_numpy(w, factor):
    return factor * np.sum(_gram_minus_identity(w) ** 2)


def _so_gradient_numpy(w, factor):
    a = _gram_minus_identity(w)
    fan_in, channels = w.shape
    return 4 * factor * (a @ w if channels > fan_in else w @ a)


def _start(kernel, size):
    """The start vector b the package draws for this kernel: a given of the procedure."""
    return np.asarray(power_iteration_start(size, kernel), "float64")


def _reference_srip_numpy(w, factor, b):
    """The reference's lines, in NumPy: v1 = A b; v2 = v1/‖v1‖; v3 = A v2; ‖v3‖²."""
    a = _gram_minus_identity(w)
    v1 = a @ b
    v2 = v1 / np.linalg.norm(v1)
    v3 = a @ v2
    return factor * np.linalg.norm(v3) ** 2


def _srip_numpy(w, factor, iterations, b):
    a = _gram_minus_identity(w)
    x = b / np.linalg.norm(b)
    for _ in range(iterations - 1):
        x = a @ x / np.linalg.norm(a @ x)
    return factor * np.linalg.norm(a @ x) ** 2


def _value_and_gradient(regularizer, kernel):
    variable = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        value = regularizer(variable)
    return value.numpy(), tape.gradient(value, variable).numpy()


@pytest.mark.parametrize("case", sorted(KERNELS))
def test_so_value_and_gradient_match_numpy(case):
    shape, axis, as_matrix = KERNELS[case]
    kernel = _kernel(shape).astype("float32")
    value, grad = _value_and_gradient(SoftOrthogonality(0.3, axis=axis), kernel)
    w = as_matrix(kernel.astype("float64"))
    assert value == pytest.approx(_so_numpy(w, 0.3), rel=1e-5)
    np.testing.assert_allclose(as_matrix(grad), _so_gradient_numpy(w, 0.3), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", sorted(KERNELS))
def test_srip_value_matches_the_reference_procedure(case):
    shape, axis, as_matrix = KERNELS[case]
    kernel = _kernel(shape).astype("float32")
    value = SRIP(0.3, axis=axis)(kernel)
    w = as_matrix(kernel.astype("float64"))
    b = _start(kernel, min(w.shape))
    assert float(value) == pytest.approx(_reference_srip_numpy(w, 0.3, b), rel=1e-5)


@pytest.mark.parametrize("case", ["conv2d-3x3x4x8", "dense-5x12"])
def test_srip_gradient_flows_through_the_iteration_as_finite_differences(case):
    shape, axis, as_matrix = KERNELS[case]
    kernel = _kernel(shape)  # float64: the penalty is computed in float64 too
    _, grad = _value_and_gradient(SRIP(0.3, axis=axis), kernel)
    # b carries no gradient (as the reference's torch.rand): hold it at this kernel's.
    b = _start(kernel, min(as_matrix(kernel).shape))
    step, numeric = 1e-6, np.zeros_like(kernel)
    for i in np.ndindex(kernel.shape):
        up, down = kernel.copy(), kernel.copy()
        up[i] += step
        down[i] -= step
        srip = _reference_srip_numpy(as_matrix(up), 0.3, b) - _reference_srip_numpy(
            as_matrix(down), 0.3, b
        )
        numeric[i] = srip / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("iterations", [1, 3, 5])
def test_power_iterations_counts_the_products_with_a(iterations):
    kernel = _kernel((3, 3, 4, 8))
    value = SRIP(1.0, power_iterations=iterations)(kernel)
    expected = _srip_numpy(kernel.reshape(-1, 8), 1.0, iterations, _start(kernel, 8))
    assert float(value) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("case", ["conv2d-3x3x4x8", "dense-5x12"])
def test_srip_tends_to_the_squared_spectral_norm(case):
    shape, axis, as_matrix = KERNELS[case]
    kernel = _kernel(shape)
    sigma = np.linalg.norm(_gram_minus_identity(as_matrix(kernel)), 2)
    assert float(SRIP(1.0, axis=axis, power_iterations=300)(kernel)) == pytest.approx(
        sigma**2, rel=1e-6
    )
    # the reference's two steps underestimate it
    assert float(SRIP(1.0, axis=axis)(kernel)) <= sigma**2 * (1 + 1e-12)


def test_start_vector_is_uniform_looking_and_new_whenever_the_kernel_changes():
    kernel = _kernel((3, 3, 4, 8)).astype("float32")
    start = _start(kernel, 64)
    assert start.shape == (64, 1) and 0 <= start.min() and start.max() < 1
    assert 0.3 < start.mean() < 0.7 and start.std() > 0.2
    np.testing.assert_array_equal(start, _start(kernel.copy(), 64))  # deterministic
    moved = kernel.copy()
    moved[0, 0, 0, 0] += 1e-4  # one small optimizer step
    assert abs(np.corrcoef(start[:, 0], _start(moved, 64)[:, 0])[0, 1]) < 0.5
    assert np.all(np.isfinite(_start(np.zeros((3, 3), "float32"), 3)))


def test_training_cannot_fool_srip_with_its_start_vector():
    """With a start vector fixed once, minimising SRIP alone drives Ab to zero and leaves σ(A)
    large (measured: estimate 0.68, true σ² 32.8 from this start); a new b every step, as the
    reference's torch.rand, brings the true σ² down."""
    w = tf.Variable((np.random.default_rng(0).normal(size=(36, 8)) * 0.6).astype("float32"))
    srip = SRIP(1.0)

    @tf.function
    def steps():
        for _ in tf.range(3000):
            with tf.GradientTape() as tape:
                loss = srip(w)
            w.assign_sub(1e-3 * tape.gradient(loss, w))

    steps()
    a = w.numpy().T @ w.numpy() - np.eye(8)
    assert np.linalg.norm(a, 2) ** 2 < 0.1


@pytest.mark.parametrize("regularizer", [SoftOrthogonality(1.0), SRIP(1.0)], ids=repr)
def test_orthogonal_kernels_have_zero_penalty_and_zero_gradient(regularizer):
    q, _ = np.linalg.qr(_kernel((12, 5)))  # orthonormal columns
    for kernel in (np.eye(4, dtype="float32"), q, q.T):  # q.T: orthonormal rows
        value, grad = _value_and_gradient(regularizer, kernel)
        assert abs(value) < 1e-12 and np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, 0.0, atol=1e-6)


@pytest.mark.parametrize("regularizer", [SoftOrthogonality(0.1), SRIP(0.1)], ids=repr)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16bit_kernels_are_computed_in_float32(regularizer, dtype):
    kernel = keras.ops.cast(_kernel((3, 3, 4, 8)), dtype)
    value = regularizer(kernel)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    as_float32 = keras.ops.cast(kernel, "float32")  # the same values, and so SRIP's same b
    assert float(value) == pytest.approx(float(regularizer(as_float32)), rel=1e-6)


@pytest.mark.parametrize(
    "regularizer, config",
    [
        (SoftOrthogonality(0.5), {"factor": 0.5, "axis": None}),
        (SoftOrthogonality(1e-2, axis=(0, 1, 3)), {"factor": 1e-2, "axis": [0, 1, 3]}),
        (SRIP(0.5), {"factor": 0.5, "axis": None, "power_iterations": 2}),
        (
            SRIP(1e-6, axis=0, power_iterations=4),
            {"factor": 1e-6, "axis": [0], "power_iterations": 4},
        ),
    ],
    ids=repr,
)
def test_config_and_serialization_round_trip(regularizer, config):
    assert regularizer.get_config() == config
    assert type(regularizer).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(regularizer)
    )
    assert type(restored) is type(regularizer) and restored.get_config() == config
    layer = keras.layers.Dense(3, kernel_regularizer=regularizer)
    clone = keras.layers.Dense.from_config(layer.get_config())
    assert clone.kernel_regularizer.get_config() == config


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SoftOrthogonality(-1.0), "Received: factor=-1.0"),
        (lambda: SRIP(float("nan")), "Received: factor=nan"),
        (lambda: SRIP("1e-2"), "Received: factor='1e-2'"),
        (lambda: SoftOrthogonality(1.0, axis=(0, 0)), "Received: axis=(0, 0)"),
        (
            lambda: SRIP(1.0, power_iterations=0),
            "expected an int >= 1. Received: power_iterations=0",
        ),
        (lambda: SRIP(1.0, power_iterations=2.0), "Received: power_iterations=2.0"),
        (lambda: SRIP(1.0, power_iterations=True), "Received: power_iterations=True"),
    ],
)
def test_invalid_arguments_are_refused_with_keras_style_messages(make, message):
    with pytest.raises(ValueError, match="Invalid value for argument") as error:
        make()
    assert message in str(error.value)


@pytest.mark.parametrize("regularizer", [SoftOrthogonality(1.0), SRIP(1.0)], ids=repr)
def test_out_of_range_axis_is_refused_when_called(regularizer):
    with pytest.raises(ValueError, match="out of range"):
        type(regularizer)(1.0, axis=4)(np.ones((3, 3, 2, 2), "float32"))


def test_apply_srip_attaches_to_every_kernel_with_its_axes_and_trains():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.DepthwiseConv2D(3, name="depthwise"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="classifier"),
        ]
    )
    methods.apply(model, "srip", 1e-2)
    kernels = {layer.name: layer.kernel for layer in model.layers if hasattr(layer, "kernel")}
    axes = {"conv": [0, 1, 2], "depthwise": [0, 1], "classifier": [0]}
    for name, kernel in kernels.items():
        assert isinstance(kernel.regularizer, SRIP)
        assert kernel.regularizer.get_config() == {
            "factor": 1e-2,
            "axis": axes[name],
            "power_iterations": 2,
        }
    depthwise = keras.ops.convert_to_numpy(kernels["depthwise"]).astype("float64")
    w = depthwise.reshape(9, -1)  # (3·3, in·multiplier)
    expected = _reference_srip_numpy(w, 1e-2, _start(kernels["depthwise"], min(w.shape)))
    assert float(kernels["depthwise"].regularizer(kernels["depthwise"])) == pytest.approx(
        expected, rel=1e-5
    )
    assert len(model.losses) == 3
    model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(np.ones((4, 6, 6, 2)), np.zeros((4, 3)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "preset, factor",
    [
        ("cifar10-wrn28-10", 1e-2),
        ("cifar100-resnet110", 1e-2),
        ("imagenet-resnet50", 1e-6),
        ("fashion-mnist", 1e-2),
    ],
)
def test_default_factors_are_the_reference_initial_ones(preset, factor):
    for method in ("so", "srip"):
        assert presets.default_factor(presets.get(preset), method) == factor
        assert methods.get(method).kind == "penalty" and methods.get(method).layers == "kernels"


_JAX_SCRIPT = r"""
import json, sys
import numpy as np
import jax
import keras
from keras_normloss.regularizers.penalties import SRIP, SoftOrthogonality, power_iteration_start

kernel = np.asarray(json.loads(sys.stdin.read()), dtype="float32")
out = {"backend": keras.backend.backend()}
out["start"] = np.asarray(power_iteration_start(8, kernel)).tolist()
for name, reg in (("so", SoftOrthogonality(0.3)), ("srip", SRIP(0.3))):
    value, grad = jax.jit(jax.value_and_grad(lambda k: reg(k)))(kernel)
    out[name] = [float(value), np.asarray(grad).tolist()]
print(json.dumps(out))
"""


@pytest.mark.subprocess
def test_so_and_srip_value_and_gradient_under_jax_jit():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    kernel = _kernel((3, 3, 4, 8)).astype("float32")
    out = run_script(_JAX_SCRIPT, "jax", stdin=json.dumps(kernel.tolist()))
    value, grad = _value_and_gradient(SoftOrthogonality(0.3), kernel)
    assert out["so"][0] == pytest.approx(float(value), rel=1e-5)
    np.testing.assert_allclose(np.asarray(out["so"][1]), grad, rtol=1e-4, atol=1e-6)
    # SRIP's b is hashed from the low bits of Σw², which another backend's reduction order
    # may change: check JAX's value and gradient against the oracle at JAX's own b.
    b = np.asarray(out["start"], "float64")
    w = kernel.astype("float64").reshape(-1, 8)
    assert out["srip"][0] == pytest.approx(_reference_srip_numpy(w, 0.3, b), rel=1e-5)
    step, numeric = 1e-6, np.zeros_like(w)
    for i in np.ndindex(w.shape):
        up, down = w.copy(), w.copy()
        up[i] += step
        down[i] -= step
        numeric[i] = (_reference_srip_numpy(up, 0.3, b) - _reference_srip_numpy(down, 0.3, b)) / (
            2 * step
        )
    jax_grad = np.asarray(out["srip"][1]).reshape(-1, 8)
    np.testing.assert_allclose(jax_grad, numeric, rtol=1e-3, atol=1e-5)
