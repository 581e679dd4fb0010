"""The table of methods: every method applies with its default layers, through the Python API
(`methods.apply`, `attach(model, NAME)`) and the command line."""

import json
import warnings

import keras
import numpy as np
import pytest
from small_runs import tiny_run

from keras_normloss import (
    EpochProjection,
    NormLoss,
    attach,
    channel_norms,
    layers,
    methods,
    models,
    train,
)
from keras_normloss.methods import MethodReport
from keras_normloss.training import presets, sweep

# ResNet-8: the smallest registered model (7 convolutions), the quicker to build and trace.
SMALL = tiny_run(8)


def _factor(name):
    return 1e-3 if methods.get(name).takes_factor else None


def _wrapped(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, layers.KernelReparametrization)
    ]


# ResNet-20 (option A): 19 convolutions (stem first), one Dense classifier, no 1x1 shortcut.
DEFAULT_LAYERS = [
    ("none", 0, 0, 0, 0),
    ("weight-decay", 20, 0, 0, 0),
    ("normloss", 20, 0, 0, 0),
    ("so", 20, 0, 0, 0),
    ("srip", 20, 0, 0, 0),
    ("wrs", 0, 20, 0, 0),
    ("pbwn", 0, 19, 0, 0),  # convs only: the classifier stays plain, as in PBWN's code
    ("pbwn-epoch", 0, 0, 0, 19),
    ("wn", 0, 0, 19, 0),
    ("oni", 0, 0, 19, 0),
    ("olm", 0, 0, 19, 0),
    ("olm-l1", 0, 0, 1, 0),
    ("normloss-decoupled", 0, 0, 0, 0),
    ("weight-decay-decoupled", 0, 0, 0, 0),
]


def test_the_default_layers_test_covers_every_method():
    assert sorted(case[0] for case in DEFAULT_LAYERS) == sorted(methods.names())


@pytest.mark.parametrize("name, regularized, constrained, wrapped, projected", DEFAULT_LAYERS)
def test_every_method_touches_its_default_layers(
    name, regularized, constrained, wrapped, projected
):
    model = models.cifar_resnet(20, seed=0)
    report = methods.apply(model, name, _factor(name))
    new = report.model
    assert sum(v.regularizer is not None for v in new.trainable_weights) == regularized
    assert sum(v.constraint is not None for v in new.trainable_weights) == constrained
    assert len(_wrapped(new)) == wrapped
    assert sum(len(c.pairs) for c in report.callbacks) == projected
    assert (new is model) == (wrapped == 0)
    if name == "olm-l1":
        assert _wrapped(new)[0].layer.name == "stem_conv"
    if methods.get(name).kind == "optimizer":
        assert set(report.optimizer_options) & {"normloss_factor", "weight_decay"}
    y = new(np.zeros((1, 32, 32, 3), "float32"))
    assert np.all(np.isfinite(y))


def test_convs_leave_projection_shortcuts_and_classifier_plain_on_resnet50():
    """ONI's ImageNet code leaves the downsampling 1x1 convs and the fc plain."""
    model = keras.applications.ResNet50(weights=None)
    where = methods.layer_selector("convs", model)
    chosen = [layer.name for layer in model.layers if where(layer)]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53 and len(chosen) == 49
    assert not any(name.endswith("_0_conv") for name in chosen)
    assert "predictions" not in chosen and chosen[0] == "conv1_conv"


def test_factor_is_required_or_refused():
    model = models.cifar_resnet(20, seed=0)
    with pytest.raises(ValueError, match="needs its factor"):
        methods.apply(model, "normloss")
    with pytest.raises(ValueError, match="takes no factor"):
        methods.apply(model, "wn", 1e-3)
    with pytest.raises(ValueError, match="Received: method='l3'"):
        methods.apply(model, "l3", 1e-3)


def test_attach_by_name_in_place_and_with_a_new_model():
    model = models.cifar_resnet(20, seed=0)
    report = attach(model, "normloss", factor=1e-2)
    assert isinstance(report, MethodReport) and report.model is model
    assert len(model.losses) == 20 and isinstance(model.layers[1].kernel.regularizer, NormLoss)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    with pytest.warns(UserWarning, match="cannot change `model` in place"):
        wn = attach(model, "wn")
    assert wn.model is not model and len(_wrapped(wn.model)) == 19
    # WN starts with g = ||v||: the function is unchanged at wrap time.
    np.testing.assert_allclose(wn.model(x), model(x), rtol=1e-4, atol=1e-4)


def test_pbwn_projects_after_every_step():
    """PBWN's channels have unit norm after every step (the wrs projection)."""
    model = methods.apply(models.cifar_resnet(20, seed=0), "pbwn").model
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    for _ in range(2):
        model.train_on_batch(x, np.arange(8) % 10)
        for layer in model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                np.testing.assert_allclose(channel_norms(layer.kernel), 1.0, rtol=1e-5)
    assert np.abs(np.asarray(channel_norms(model.get_layer("classifier").kernel)) - 1).max() > 0.1


def test_epoch_projection_projects_after_every_epoch_but_the_last():
    """As the reference (NormProjection's exp_Conv_CIFAR.lua): not before the first step, not
    after each step, after each epoch but the last."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.SGD(0.5), "mse")
    kernel = model.layers[0].kernel
    kernel.assign(3.0 * np.ones((4, 3), "float32"))
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(np.asarray(channel_norms(kernel)))

    x, y = np.ones((4, 4), "float32"), 5 * np.ones((4, 3), "float32")
    model.fit(
        x,
        y,
        batch_size=2,
        epochs=2,
        verbose=0,
        callbacks=[EpochProjection([kernel], [(0,)]), Spy()],
    )
    np.testing.assert_allclose(seen[0], 6.0, rtol=1e-6)  # not projected before the first step
    np.testing.assert_allclose(seen[2], 1.0, rtol=1e-6)  # after epoch 1
    assert np.abs(seen[3] - 1).max() > 0.01  # not after each step
    assert np.abs(np.asarray(channel_norms(kernel)) - 1).max() > 0.01  # not after the last


def test_decoupled_defaults_carry_the_momentum_gain():
    preset = presets.get("quick")
    assert presets.default_factor(preset, "normloss-decoupled") == pytest.approx(1e-2 / 0.1)
    assert presets.default_factor(preset, "weight-decay-decoupled") == pytest.approx(1e-4 / 0.1)
    assert presets.default_factor(preset, "oni") is None


def test_sweep_runs_methods_without_factor_once():
    runs = sweep.grid(["normloss", "oni"], [1e-3, 1e-2], [0, 1], [None])
    assert [r[:2] for r in runs].count(("oni", None)) == 2 and len(runs) == 6


@pytest.mark.parametrize(
    "extra",
    [
        ["--method", "oni"],
        ["--regularizer", "pbwn-epoch"],  # the old flag still works
        ["--method", "normloss-decoupled", "--optimizer", "adam"],
    ],
    ids=["oni", "pbwn-epoch", "decoupled-adam"],
)
@pytest.mark.end_to_end
def test_train_runs_each_kind_of_method(tmp_path, extra):
    out = tmp_path / "run"
    assert (
        train.main(
            SMALL + extra + ["--epochs", "1", "--steps-per-epoch", "2", "--output", str(out)]
        )
        == 0
    )
    config = json.load(open(out / "config.json"))
    assert config["method"] == extra[1]
    if "--optimizer" in extra:
        assert config["optimizer"] == "adam" and config["lr"] == pytest.approx(train.ADAPTIVE_LR)
        # The decoupled default keeps the coupled SGD default's relaxation time:
        # λ·lr_sgd/((1 − μ)·lr_adam) = 1e-2·0.1/(0.1·1e-3).
        assert config["factor"] == pytest.approx(10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras.saving.load_model(out / "model.keras")
    if extra[1] == "oni":
        assert len(_wrapped(model)) == 7
        oblique = json.load(open(out / "results.json"))["final_oblique_distance"]
        assert oblique == pytest.approx(0.414, abs=0.05)  # ONI's scale starts at 1.414
