"""Decoupled Norm Loss and weight decay (keras_normloss.optimizers) against
NumPy oracles written from the optimizers' published update rules."""

import importlib.util
import inspect
import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import two_replica_strategy
from other_backend import run_script

from keras_normloss import NormLoss, attach
from keras_normloss import optimizers as nlo

# The training run compared across backends and strategies. It is executed
# in this process (TensorFlow) and, for JAX, as a script in a subprocess,
# since the backend is fixed when Keras is imported.
_TRAIN_SCRIPT = r"""
import contextlib
import json

import keras
import numpy as np

from keras_normloss import optimizers as nlo

CASES = ("sgd_nesterov_schedule", "adam", "adamw", "loss_scale_sgd")


def make_model():
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3),
        keras.layers.DepthwiseConv2D(2, depth_multiplier=2),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in model.weights])
    return model


def make_optimizer(case, model):
    axes = nlo.channel_axes_by_path(model)
    if case == "sgd_nesterov_schedule":
        schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.7)
        return nlo.NormLossSGD(schedule, momentum=0.9, nesterov=True, weight_decay=0.5,
                               normloss_factor=2.0, normloss_axes=axes)
    if case == "adam":
        return nlo.NormLossAdam(0.01, normloss_factor=0.2, normloss_axes=axes)
    if case == "adamw":
        return nlo.NormLossAdamW(0.01, weight_decay=0.05, normloss_factor=0.2, normloss_axes=axes)
    inner = nlo.NormLossSGD(0.005, momentum=0.9, normloss_factor=2.0, normloss_axes=axes)
    return keras.optimizers.LossScaleOptimizer(inner)


def train(case, strategy=None, steps=3):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = make_model()
        model.compile(make_optimizer(case, model), "mse")
    model.fit(x, y, batch_size=8, epochs=steps, shuffle=False, verbose=0)
    return model


def final_weights(case):
    return [keras.ops.convert_to_numpy(w).tolist() for w in train(case).weights]


def accumulated_zero_gradient_steps(kernel, micro_steps=4):
    # JAX applies the decay on every micro-step and reverts it with lax.cond.
    optimizer = nlo.NormLossSGD(0.1, normloss_factor=0.3, gradient_accumulation_steps=2)
    variable = keras.Variable(kernel)
    for _ in range(micro_steps):
        optimizer.apply([keras.ops.zeros(kernel.shape)], [variable])
    return keras.ops.convert_to_numpy(variable).tolist()


if __name__ == "__main__":
    kernel = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype("float32")
    print(json.dumps({"backend": keras.backend.backend(),
                      "accumulated": accumulated_zero_gradient_steps(kernel),
                      "weights": {case: final_weights(case) for case in CASES}}))
"""

_train = {"__name__": "train_script"}
exec(compile(_TRAIN_SCRIPT, "<train script>", "exec"), _train)


# --- NumPy oracles ---------------------------------------------------------


def np_normloss(w, lr, factor, axes):
    w = w.astype("float64")
    norms = np.sqrt((w**2).sum(axis=axes, keepdims=True))
    return w * (1.0 - lr * 2.0 * factor * (1.0 - 1.0 / norms))


def np_weight_decay(w, lr, wd):
    return w.astype("float64") * (1.0 - lr * wd)


class NumpySGD:
    """Keras's SGD: velocity = μ·velocity − lr·g; w += velocity
    (Nesterov: w += μ·velocity − lr·g)."""

    def __init__(self, momentum=0.0, nesterov=False):
        self.momentum, self.nesterov, self.velocity = momentum, nesterov, 0.0

    def step(self, w, g, lr):
        if self.momentum == 0:
            return w - lr * g
        self.velocity = self.momentum * self.velocity - lr * g
        if self.nesterov:
            return w + self.momentum * self.velocity - lr * g
        return w + self.velocity


class NumpyAdam:
    """Kingma & Ba's Adam with Keras's ε placement: ε added to √v, outside
    the bias correction."""

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.b1, self.b2, self.eps = beta_1, beta_2, epsilon
        self.m = self.v = 0.0
        self.t = 0

    def step(self, w, g, lr):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g**2
        alpha = lr * np.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        return w - alpha * self.m / (np.sqrt(self.v) + self.eps)


# name -> (our optimizer, a NumPy model of the base optimizer's own step)
OPTIMIZERS = {
    "sgd": (lambda **kw: nlo.NormLossSGD(0.1, **kw), lambda: NumpySGD()),
    "momentum": (lambda **kw: nlo.NormLossSGD(0.1, momentum=0.9, **kw), lambda: NumpySGD(0.9)),
    "nesterov": (
        lambda **kw: nlo.NormLossSGD(0.1, momentum=0.9, nesterov=True, **kw),
        lambda: NumpySGD(0.9, nesterov=True),
    ),
    "adam": (lambda **kw: nlo.NormLossAdam(0.1, **kw), lambda: NumpyAdam()),
    "adamw": (lambda **kw: nlo.NormLossAdamW(0.1, **kw), lambda: NumpyAdam()),
}
LR = 0.1
MODES = {  # (normloss_factor, weight_decay)
    "normloss": (0.3, None),
    "weight_decay": (0.0, 0.4),
    "both": (0.3, 0.4),
}


def _kwargs(name, factor, wd):
    kw = {"normloss_factor": factor}
    if wd is not None or name == "adamw":  # Keras's AdamW requires a weight decay
        kw["weight_decay"] = 0.0 if wd is None else wd
    return kw


def _kernel(shape=(3, 3, 2, 4), seed=0, scale=0.6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype("float32") * scale


def _oracle_decoupled(w, lr, factor, wd, axes=(0, 1, 2)):
    if factor:
        w = np_normloss(w, lr, factor, axes)
    if wd:
        w = np_weight_decay(w, lr, wd)
    return w


def _close(actual, expected):
    np.testing.assert_allclose(keras.ops.convert_to_numpy(actual), expected, rtol=2e-6, atol=1e-7)


# --- The update, one optimizer step at a time -------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_zero_gradient_steps_are_exactly_the_decoupled_formula(name, mode):
    """Three steps with zero gradients: momentum and Adam's moments stay zero,
    so only the decoupled update moves the weights; nothing of it leaks into
    the velocity."""
    factor, wd = MODES[mode]
    optimizer = OPTIMIZERS[name][0](**_kwargs(name, factor, wd))
    w0 = _kernel()
    kernel = keras.Variable(w0)
    expected = w0.astype("float64")
    for _ in range(3):
        optimizer.apply([np.zeros_like(w0)], [kernel])
        expected = _oracle_decoupled(expected, LR, factor, wd)
        _close(kernel, expected)
    assert not np.allclose(expected, w0)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_nonzero_gradient_step_is_decoupled_update_then_base_step(name):
    factor, wd = MODES["both"]
    optimizer = OPTIMIZERS[name][0](**_kwargs(name, factor, wd))
    base = OPTIMIZERS[name][1]()
    w0 = _kernel()
    kernel = keras.Variable(w0)
    expected = w0.astype("float64")
    rng = np.random.default_rng(1)
    for _ in range(3):
        g = rng.normal(size=w0.shape).astype("float32")
        optimizer.apply([g], [kernel])
        expected = base.step(_oracle_decoupled(expected, LR, factor, wd), g, LR)
        # float32 Adam steps of size ~lr: Keras's own Adam is 2e-6 from float64.
        np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-5, atol=5e-6)


def test_learning_rate_schedule_value_of_each_step_is_used():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0, 1], [0.5, 0.2, 0.05])
    optimizer = nlo.NormLossSGD(schedule, momentum=0.9, weight_decay=0.3, normloss_factor=0.4)
    w0 = _kernel()
    kernel = keras.Variable(w0)
    expected = w0.astype("float64")
    for lr in (0.5, 0.2, 0.05, 0.05):  # the schedule at iterations 0, 1, 2, 3
        optimizer.apply([np.zeros_like(w0)], [kernel])
        expected = _oracle_decoupled(expected, lr, 0.4, 0.3)
        _close(kernel, expected)


def test_gradient_accumulation_applies_only_on_update_steps():
    optimizer = nlo.NormLossSGD(0.1, normloss_factor=0.3, gradient_accumulation_steps=2)
    w0 = _kernel()
    kernel = keras.Variable(w0)
    expected = w0.astype("float64")
    for step in range(4):
        optimizer.apply([np.zeros_like(w0)], [kernel])
        if step % 2 == 1:
            expected = np_normloss(expected, 0.1, 0.3, (0, 1, 2))
        _close(kernel, expected)


def test_loss_scale_optimizer_applies_it_once_and_skips_non_finite_steps():
    inner = nlo.NormLossSGD(0.1, momentum=0.9, weight_decay=0.2, normloss_factor=0.3)
    optimizer = keras.optimizers.LossScaleOptimizer(inner)
    w0 = _kernel()
    kernel = keras.Variable(w0)
    optimizer.apply([np.zeros_like(w0)], [kernel])
    expected = _oracle_decoupled(w0, 0.1, 0.3, 0.2)
    _close(kernel, expected)
    scale = float(optimizer.dynamic_scale.numpy())
    optimizer.apply([np.full_like(w0, np.inf)], [kernel])  # skipped: no decay either
    _close(kernel, expected)
    assert float(optimizer.dynamic_scale.numpy()) == scale / 2
    optimizer.apply([np.zeros_like(w0)], [kernel])
    _close(kernel, _oracle_decoupled(expected, 0.1, 0.3, 0.2))


def test_rank_0_and_1_variables_are_untouched_by_default():
    rng = np.random.default_rng(0)
    bias, gamma = rng.normal(size=(4,)).astype("float32"), 1.0 + np.zeros(4, "float32")
    variables = [keras.Variable(bias), keras.Variable(gamma), keras.Variable(np.float32(2.0))]
    optimizer = nlo.NormLossSGD(0.1, weight_decay=0.5, normloss_factor=0.5)
    optimizer.apply([np.zeros_like(v.numpy()) for v in variables], variables)
    for variable, value in zip(variables, [bias, gamma, 2.0]):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_weight_decay_1d_decays_vectors_but_gives_them_no_normloss():
    bias = np.arange(1.0, 5.0, dtype="float32")
    variable = keras.Variable(bias)
    optimizer = nlo.NormLossSGD(0.1, weight_decay=0.5, normloss_factor=0.5, weight_decay_1d=True)
    optimizer.apply([np.zeros(4, "float32")], [variable])
    _close(variable, np_weight_decay(bias, 0.1, 0.5))


def test_exclude_from_normloss_by_variable_and_by_path_pattern():
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dense(3, name="head")]
    )
    first, head = model.layers[0].kernel, model.layers[1].kernel
    w_first, w_head = first.numpy(), head.numpy()
    for kwargs in ({"var_list": [head]}, {"var_names": ["head"]}):
        first.assign(w_first)
        head.assign(w_head)
        optimizer = nlo.NormLossSGD(0.1, normloss_factor=0.5)
        optimizer.exclude_from_normloss(**kwargs)
        optimizer.apply([np.zeros_like(w_first), np.zeros_like(w_head)], [first, head])
        np.testing.assert_array_equal(head.numpy(), w_head)
        _close(first, np_normloss(w_first, 0.1, 0.5, (0,)))
        with pytest.raises(ValueError, match="before the optimizer is built"):
            optimizer.exclude_from_normloss(var_names=["dense"])


def test_keras_exclude_from_weight_decay_still_applies():
    kernel = keras.Variable(_kernel(), name="kernel")
    optimizer = nlo.NormLossSGD(0.1, weight_decay=0.5, normloss_factor=0.0)
    optimizer.exclude_from_weight_decay(var_names=["kernel"])
    optimizer.apply([np.zeros((3, 3, 2, 4), "float32")], [kernel])
    np.testing.assert_array_equal(kernel.numpy(), _kernel())


def test_axes_map_entries_override_and_none_excludes():
    a, b, c = (keras.Variable(_kernel(seed=s), name=n) for s, n in enumerate("abc"))
    w = [v.numpy() for v in (a, b, c)]
    axes = {a.path: (0, 1), b.path: None}  # c is not listed: default rule
    optimizer = nlo.NormLossSGD(0.1, normloss_factor=0.5, normloss_axes=axes)
    optimizer.apply([np.zeros_like(x) for x in w], [a, b, c])
    _close(a, np_normloss(w[0], 0.1, 0.5, (0, 1)))
    np.testing.assert_array_equal(b.numpy(), w[1])
    _close(c, np_normloss(w[2], 0.1, 0.5, (0, 1, 2)))


def test_out_of_range_axes_name_the_variable():
    kernel = keras.Variable(np.ones((3, 4), "float32"), name="k")
    optimizer = nlo.NormLossSGD(0.1, normloss_axes={kernel.path: (0, 5)})
    with pytest.raises(ValueError, match="normloss_axes for variable 'k'.*out of range"):
        optimizer.apply([np.zeros((3, 4), "float32")], [kernel])


def _mixed_model():
    return keras.Sequential(
        [
            keras.Input((9, 9, 4)),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            keras.layers.Conv2DTranspose(6, 3, name="tconv"),
            keras.layers.SeparableConv2D(5, 3, name="sep"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="head"),
        ]
    )


def test_channel_axes_by_path_follows_the_layer_table():
    model = _mixed_model()
    expected = {
        "sequential/dw/kernel": (0, 1),
        "sequential/tconv/kernel": (0, 1, 3),
        "sequential/sep/depthwise_kernel": (0, 1),
        "sequential/sep/pointwise_kernel": (0, 1, 2),
        "sequential/head/kernel": (0,),
    }
    assert nlo.channel_axes_by_path(model) == expected


def test_channel_axes_by_path_maps_unknown_matrices_to_none():
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(10, 3)])
    assert nlo.channel_axes_by_path(model) == {"sequential/embedding/embeddings": None}


def test_model_given_as_axes_uses_depthwise_and_transpose_channels():
    model = _mixed_model()
    kernels = {w.path: w.numpy() for w in model.trainable_weights}
    optimizer = nlo.NormLossSGD(0.1, normloss_factor=0.5, normloss_axes=model)
    assert optimizer.normloss_axes == nlo.channel_axes_by_path(model)
    grads = [np.zeros(w.shape, "float32") for w in model.trainable_weights]
    optimizer.apply(grads, model.trainable_weights)
    for w in model.trainable_weights:
        axes = optimizer.normloss_axes.get(w.path)
        if axes is None:  # biases and BatchNormalization
            np.testing.assert_array_equal(w.numpy(), kernels[w.path])
        else:
            _close(w, np_normloss(kernels[w.path], 0.1, 0.5, axes))


def test_plain_sgd_decoupled_equals_coupled_normloss():
    """Without momentum the decoupled step is the coupled step: the penalty's
    gradient 2λ·w·(1 − 1/‖w_c‖) times lr, at the same weights."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 9, 9, 4)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    coupled = _mixed_model()
    initial = coupled.get_weights()
    attach(coupled, NormLoss(0.2))
    coupled.compile(keras.optimizers.SGD(0.05), "mse")
    decoupled = _mixed_model()
    decoupled.set_weights(initial)
    decoupled.compile(nlo.NormLossSGD(0.05, normloss_factor=0.2, normloss_axes=decoupled), "mse")
    for model in (coupled, decoupled):
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    for a, b, w0 in zip(coupled.get_weights(), decoupled.get_weights(), initial):
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-6)
    assert not np.allclose(decoupled.get_weights()[0], initial[0])


def test_warns_when_a_kernel_also_has_a_normloss_regularizer():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    attach(model, NormLoss(0.1))
    optimizer = nlo.NormLossSGD(0.1, normloss_factor=0.1)
    grads = [np.zeros(w.shape, "float32") for w in model.trainable_weights]
    with pytest.warns(UserWarning, match="Norm Loss is applied twice"):
        optimizer.apply(grads, model.trainable_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per variable, not every step
        optimizer.apply(grads, model.trainable_weights)


def test_zero_channel_stays_zero_and_16_bit_kernels_stay_finite():
    w = _kernel(shape=(3, 4))
    w[:, 1] = 0.0
    out = keras.ops.convert_to_numpy(nlo.decoupled_normloss_update(w, 0.5, 0.1))
    assert np.all(out[:, 1] == 0.0)
    _close(np.delete(out, 1, axis=1), np_normloss(np.delete(w, 1, axis=1), 0.1, 0.5, (0,)))
    half = nlo.decoupled_normloss_update(w.astype("float16"), 0.5, 0.1)
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(half)))


# --- TensorFlow vs JAX, one device vs two replicas ----------------------------


@pytest.mark.slow
@pytest.mark.subprocess
def test_same_weights_on_tensorflow_and_jax():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    out = run_script(_TRAIN_SCRIPT, "jax")
    kernel = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype("float32")
    two_steps = np_normloss(np_normloss(kernel, 0.1, 0.3, (0, 1, 2)), 0.1, 0.3, (0, 1, 2))
    _close(np.asarray(out["accumulated"], "float32"), two_steps)
    for case in _train["CASES"]:
        keras.utils.clear_session()
        tf_weights = _train["train"](case).get_weights()
        for a, b in zip(tf_weights, out["weights"][case]):
            np.testing.assert_allclose(np.asarray(b, "float32"), a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["sgd_nesterov_schedule", "loss_scale_sgd"])
def test_two_mirrored_replicas_equal_one_device(case):
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py should have made 2 logical CPUs"
    single = _train["train"](case)
    strategy = two_replica_strategy()
    mirrored = _train["train"](case, strategy)
    initial = _train["make_model"]().get_weights()
    for a, b, w0 in zip(single.get_weights(), mirrored.get_weights(), initial):
        assert not np.allclose(a, w0)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    for variable in mirrored.trainable_weights:  # every device's copy got the update
        copies = [c.numpy() for c in variable.value.values]
        np.testing.assert_array_equal(copies[0], copies[1])


# --- Serialization -----------------------------------------------------------


def test_config_round_trip():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    optimizer = nlo.NormLossSGD(
        schedule,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        normloss_factor=2e-3,
        normloss_axes={"m/dw/kernel": (0, 1), "m/emb/embeddings": None},
        weight_decay_1d=True,
    )
    config = optimizer.get_config()
    assert config["normloss_factor"] == 2e-3
    assert config["normloss_axes"] == {"m/dw/kernel": [0, 1], "m/emb/embeddings": None}
    assert config["weight_decay_1d"] is True
    restored = nlo.NormLossSGD.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config
    assert restored.normloss_axes == {"m/dw/kernel": (0, 1), "m/emb/embeddings": None}


@pytest.mark.parametrize(
    "make",
    [
        lambda: nlo.NormLossAdamW(1e-3, weight_decay=0.01, normloss_factor=1e-4),
        lambda: nlo.extend_with_normloss(keras.optimizers.RMSprop)(1e-3, normloss_factor=0.1),
    ],
)
def test_keras_serialize_round_trip(make):
    optimizer = make()
    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == f"keras_normloss>{type(optimizer).__name__}"
    restored = keras.optimizers.deserialize(json.loads(json.dumps(serialized)))
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()


def test_keras_file_round_trip_keeps_optimizer_and_its_state(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 9, 9, 4)), rng.normal(size=(8, 3))
    model = _mixed_model()
    model.compile(nlo.NormLossAdamW(1e-3, normloss_factor=1e-2, normloss_axes=model), "mse")
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is nlo.NormLossAdamW
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a))
    loaded.fit(x, y, verbose=0)  # training resumes


def test_extend_with_normloss_caches_and_makes_real_subclasses():
    assert nlo.extend_with_normloss(keras.optimizers.SGD) is nlo.NormLossSGD
    assert nlo.extend_with_normloss(nlo.NormLossSGD) is nlo.NormLossSGD
    rmsprop = nlo.extend_with_normloss(keras.optimizers.RMSprop)
    assert rmsprop is nlo.extend_with_normloss(keras.optimizers.RMSprop)
    assert issubclass(rmsprop, keras.optimizers.RMSprop) and rmsprop.__name__ == "NormLossRMSprop"
    assert "RMSprop with decoupled Norm Loss" in inspect.getdoc(rmsprop)


# --- The private Keras API this rests on (checked with keras 3.15.1) --------


def test_private_keras_api_is_still_there():
    """Fails loudly if Keras renames or changes `_apply_weight_decay`."""
    nlo.check_private_api()
    for cls in (keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW):
        nlo.check_private_api(cls)


def test_apply_calls_the_hook_once_per_step_after_clipping_and_before_the_update():
    calls = []

    class Spy(nlo.NormLossSGD):
        def _apply_weight_decay(self, variables):
            calls.append(("decay", [v.path for v in variables]))
            super()._apply_weight_decay(variables)

        def update_step(self, gradient, variable, learning_rate):
            calls.append(("update", keras.ops.convert_to_numpy(gradient).tolist()))
            super().update_step(gradient, variable, learning_rate)

    kernel = keras.Variable(np.ones((2, 2), "float32"), name="k")
    Spy(0.1, clipvalue=0.5).apply([np.full((2, 2), 3.0, "float32")], [kernel])
    assert calls == [("decay", ["k"]), ("update", [[0.5, 0.5], [0.5, 0.5]])], (
        f"Keras {keras.__version__} no longer calls `_apply_weight_decay` once, "
        "after clipping and before `update_step` (as keras 3.15.1 does): "
        "keras_normloss.optimizers must be updated."
    )


def test_missing_hook_fails_loudly(monkeypatch):
    class Changed(keras.optimizers.SGD):
        pass

    monkeypatch.setattr(Changed, "_apply_weight_decay", None, raising=False)
    with pytest.raises(RuntimeError, match="private Keras API.*checked with keras 3.15.1"):
        nlo.extend_with_normloss(Changed)


# --- Errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normloss_factor": -1.0}, "normloss_factor=-1.0"),
        ({"normloss_factor": float("nan")}, "normloss_factor=nan"),
        ({"normloss_factor": True}, "normloss_factor=True"),
        ({"normloss_factor": "1e-3"}, "normloss_factor='1e-3'"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1"),
        ({"normloss_axes": [0, 1]}, "normloss_axes=\\[0, 1\\]"),
        ({"normloss_axes": {"a/kernel": "x"}}, "axis='x'"),
        ({"weight_decay_1d": 1}, "weight_decay_1d=1"),
    ],
)
def test_invalid_arguments_raise_with_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nlo.NormLossSGD(0.1, **kwargs)


@pytest.mark.parametrize(
    "cls, match",
    [
        (keras.optimizers.SGD(), "the class, not an instance"),
        (keras.layers.Dense, "subclass of keras.optimizers.Optimizer"),
        (keras.optimizers.LossScaleOptimizer, "Wrap instead"),
    ],
)
def test_extend_with_normloss_rejects_non_optimizer_classes(cls, match):
    with pytest.raises(ValueError, match=match):
        nlo.extend_with_normloss(cls)


def test_extend_with_normloss_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        nlo.extend_with_normloss(keras.optimizers.RMSprop, name="NormLossSGD")


def test_channel_axes_by_path_needs_a_built_model():
    with pytest.raises(ValueError, match="built Keras model"):
        nlo.channel_axes_by_path(keras.Sequential([keras.layers.Dense(3)]))
