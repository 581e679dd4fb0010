"""Applying a method to a model: every kind obeys the layer choice, and nothing a method needs is
silently lost (`methods.apply`, `attach(model, NAME)`, `MethodReport`)."""

import contextlib
import gc
import json
import warnings

import keras
import numpy as np
import pytest
from small_runs import tiny_run

from keras_normloss import attach, methods, train
from keras_normloss.layers.reparametrization import KernelReparametrization
from keras_normloss.methods import norm_theory, placement
from keras_normloss.training import presets
from keras_normloss.training.build import run_timescale
from keras_normloss.training.config import make_config

SMALL = tiny_run(8, model=None)


def _model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(4, 3, name="chosen"),
            keras.layers.BatchNormalization(name="chosen_bn"),
            keras.layers.Conv2D(5, 3, name="other"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="head"),
        ]
    )
    # Channel norms far from 1 and biases non-zero: every method then moves what it touches.
    model.set_weights([2.0 * w + 0.1 for w in model.get_weights()])
    return model


def _zero_gradient_loss(y_true, y_pred):
    return 0.0 * keras.ops.sum(y_pred)


def _is_chosen(layer):
    return layer.name.startswith("chosen")


def _one_step(report):
    """One SGD step whose loss has a zero gradient: only the method moves weights."""
    model = report.model
    for callback in report.callbacks:  # pbwn-epoch: one epoch of two, so it projects after it
        callback.total_epochs = 2
    model.compile(report.optimizer(keras.optimizers.SGD(0.1)), _zero_gradient_loss)
    before = {v.path: np.array(v) for v in model.trainable_weights}
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    model.fit(x, np.zeros((2, 3)), batch_size=2, epochs=1, verbose=0, callbacks=report.callbacks)
    return {
        path: not np.array_equal(before[path], np.array(v))
        for path, v in ((v.path, v) for v in model.trainable_weights)
    }


@pytest.mark.parametrize("name", [n for n in methods.names() if n != "none"])
def test_every_method_obeys_a_layer_predicate(name):
    """Whatever the kind (penalty, constraint, epoch projection, reparametrization, decoupled
    update), a method given `layers=predicate` touches the chosen layers and no other."""
    kind = methods.get(name).kind
    factor = 0.3 if methods.get(name).takes_factor else None
    report = methods.apply(_model(), name, factor, layers=_is_chosen, weight_decay_on="all")
    if kind == "reparametrization":
        wrapped = [
            layer.layer.name
            for layer in report.model._flatten_layers(include_self=False)
            if isinstance(layer, KernelReparametrization)
        ]
        assert wrapped == ["chosen"]
        return
    moved = _one_step(report)
    expected = {"sequential/chosen/kernel"}
    if name in ("weight-decay", "weight-decay-decoupled"):  # every parameter of chosen layers
        expected |= {
            "sequential/chosen/bias",
            "sequential/chosen_bn/gamma",
            "sequential/chosen_bn/beta",
        }
    assert {path for path, m in moved.items() if m} == expected


@pytest.mark.parametrize("name", ["weight-decay", "weight-decay-decoupled"])
def test_weight_decay_on_kernels_spares_biases_and_batchnorm(name):
    report = methods.apply(_model(), name, 0.3, layers=_is_chosen, weight_decay_on="kernels")
    moved = _one_step(report)
    assert {path for path, m in moved.items() if m} == {"sequential/chosen/kernel"}


def test_decoupled_normloss_matches_coupled_normloss_on_the_chosen_layers():
    """Plain SGD: decoupled Norm Loss takes the coupled penalty's step (the NumPy oracle:
    w_c ← w_c − lr·2λ·w_c·(1 − 1/‖w_c‖))."""
    report = methods.apply(_model(), "normloss-decoupled", 0.3, layers=_is_chosen)
    w0 = np.array(report.model.get_layer("chosen").kernel)
    _one_step(report)
    norms = np.linalg.norm(w0.reshape(-1, 4), axis=0)
    expected = w0 - 0.1 * 2 * 0.3 * w0 * (1 - 1 / norms)
    np.testing.assert_allclose(report.model.get_layer("chosen").kernel, expected, rtol=1e-5)


def test_chosen_weights_are_what_attach_places():
    model = _model()
    chosen = placement.chosen_weights(model, _is_chosen, "all")
    report = placement.place(model, keras.regularizers.L2(1e-3), where=_is_chosen, parameters="all")
    assert sorted(v.path for v, _ in chosen) == sorted(a.path for a in report.attached)


@contextlib.contextmanager
def _no_warning_from_a_report():
    """Fails if a report warns inside the block. Not `simplefilter("error")`: a warning raised
    as an error in `__del__` is swallowed by Python ("Exception ignored in"), so such a test
    could never fail."""
    gc.collect()  # another test's reports first, outside the block
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not [str(w.message) for w in caught if "WITHOUT" in str(w.message)]


@pytest.mark.parametrize(
    "name, factor, need",
    [
        ("pbwn-epoch", None, "callbacks"),
        ("normloss-decoupled", 1e-2, "optimizer"),
        ("weight-decay-decoupled", 1e-4, "optimizer"),
        ("wn", None, "model"),
    ],
)
def test_attach_by_name_says_what_the_method_needs(name, factor, need):
    with pytest.warns(UserWarning, match="cannot change `model` in place"):
        report = attach(_model(), name, factor=factor)
    assert report.needs == (need,)
    getattr(report, need)  # handed over: no second warning when it goes
    with _no_warning_from_a_report():
        del report
        gc.collect()


@pytest.mark.parametrize("name", ["pbwn-epoch", "normloss-decoupled", "oni"])
def test_a_discarded_report_warns_that_the_method_is_lost(name):
    """`apply(model, "pbwn-epoch"); model.fit(...)` would train with no regularization."""
    factor = 1e-2 if methods.get(name).takes_factor else None
    model = _model()
    gc.collect()  # not another test's report, collected late
    with pytest.warns(UserWarning, match=f"runs WITHOUT {name}"):
        methods.apply(model, name, factor)
        gc.collect()


def test_in_place_methods_need_nothing_more():
    model = _model()
    with _no_warning_from_a_report():
        report = attach(model, "normloss", factor=1e-2)
        del report
        gc.collect()
    assert len(model.losses) == 3


def test_copies_and_pickles_of_a_used_report_do_not_warn():
    import copy
    import pickle

    report = methods.apply(_model(), "pbwn-epoch")
    report.callbacks
    with _no_warning_from_a_report():
        twins = [copy.copy(report), copy.deepcopy(report), pickle.loads(pickle.dumps(report))]
        assert all(t.needs == ("callbacks",) for t in twins)
        del twins, report
        gc.collect()


def test_the_stem_is_the_first_convolution_also_in_a_nested_model():
    backbone = keras.Sequential(
        [keras.Input((8, 8, 3))]
        + [keras.layers.Conv2D(4, 3, padding="same", name=n) for n in ("first", "second", "last")]
    )
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            backbone,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    report = methods.apply(model, "olm-l1")
    wrapped = [
        layer.layer.name
        for layer in report.model._flatten_layers(include_self=False)
        if isinstance(layer, KernelReparametrization)
    ]
    assert wrapped == ["first"]


def test_epoch_projection_split_over_several_fits_equals_one_fit():
    """train resumes an interrupted epoch in a `fit` of its own: with the run's total epochs, the
    projection after it is not skipped."""
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    y = np.zeros((4, 3), "float32")

    def run(splits):
        report = methods.apply(_model(), "pbwn-epoch", layers=_is_chosen)
        report.callbacks[0].total_epochs = 3
        model = report.model
        model.compile(keras.optimizers.SGD(0.1), "mse")
        for first, last in splits:
            model.fit(
                x,
                y,
                batch_size=2,
                initial_epoch=first,
                epochs=last,
                verbose=0,
                shuffle=False,
                callbacks=report.callbacks,
            )
        return model.get_weights()

    for a, b in zip(run([(0, 3)]), run([(0, 1), (1, 2), (2, 3)])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_unknown_name_lists_the_methods():
    with pytest.raises(ValueError, match="normlos.*neither a method.*normloss-decoupled"):
        attach(_model(), "normlos", factor=1e-3)
    with pytest.raises(ValueError, match="expected one of .*'normloss'"):
        methods.apply(_model(), "normlos", 1e-3)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))


def test_subclassed_models_get_a_clear_error_or_work():
    model = _Subclassed()
    model(np.zeros((1, 6, 6, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed.*keras_normloss.ONI"):
        methods.apply(model, "oni")
    report = attach(model, "normloss", factor=1e-2)  # penalties work in place
    assert len(model.losses) == 2 and report.needs == ()


def test_report_optimizer_keeps_the_base_configuration():
    report = methods.apply(_model(), "normloss-decoupled", 1e-2)
    base = keras.optimizers.AdamW(2e-3, beta_1=0.8, weight_decay=0.05)
    optimizer = report.optimizer(base)
    assert isinstance(optimizer, keras.optimizers.AdamW) and optimizer.normloss_factor == 1e-2
    assert optimizer.beta_1 == 0.8 and float(optimizer.learning_rate) == pytest.approx(2e-3)
    assert optimizer.weight_decay == pytest.approx(0.05)  # the user's own decay stays
    wd = methods.apply(_model(), "weight-decay-decoupled", 1e-3).optimizer(base)
    assert wd.weight_decay == pytest.approx(1e-3)  # the method's replaces it
    with pytest.raises(ValueError, match="optimizer instance"):
        report.optimizer("sgd")


@pytest.mark.end_to_end
def test_adamw_with_decoupled_weight_decay_through_train(tmp_path):
    out = tmp_path / "run"
    args = ["--method", "weight-decay-decoupled", "--optimizer", "adamw", "--model", "resnet8"]
    assert (
        train.main(SMALL + args + ["--epochs", "1", "--steps-per-epoch", "1", "--output", str(out)])
        == 0
    )
    config = json.load(open(out / "config.json"))
    assert config["optimizer"] == "adamw" and config["method"] == "weight-decay-decoupled"


def test_decoupled_default_factor_keeps_the_relaxation_time_under_any_optimizer():
    """Per step, a decoupled Norm Loss update moves ‖w‖ − 1 by 2·lr·λ' of itself; the coupled
    default under the preset's SGD by about 2·lr·λ/(1 − μ). Equal rates, whatever the lr."""
    preset = presets.get("quick")
    coupled_rate = 2 * preset.lr * preset.normloss_factor / (1 - preset.momentum)
    for lr in (preset.lr, 1e-3, 3e-4):
        factor = presets.default_factor(preset, "normloss-decoupled", lr=lr)
        assert 2 * lr * factor == pytest.approx(coupled_rate)
        wd = presets.default_factor(preset, "weight-decay-decoupled", lr=lr)
        assert lr * wd == pytest.approx(preset.lr * preset.weight_decay / (1 - preset.momentum))


def _warning(config, steps_per_epoch):
    record = run_timescale(config, steps_per_epoch)
    return norm_theory.timescale_warning(config.method, config.factor, record)


def _one_epoch(folder, method, schedule="constant", **options):
    """The quick preset for one epoch without warmup: the timescale's arithmetic by hand."""
    return make_config(
        "quick", folder, method=method, lr_schedule=schedule, warmup_epochs=0, epochs=1, **options
    )


def test_a_factor_too_weak_for_the_run_is_named(tmp_path):
    """Decoupled Norm Loss at Adam's lr 1e-3 and λ 1e-3 relaxes in 1/(2·1e-3·1e-3) = 500,000
    steps at the quick preset's constant learning rate; every method with a factor is checked."""
    config = _one_epoch(tmp_path / "r", "normloss-decoupled", optimizer="adam", factor=1e-3)
    note = _warning(config, 1000)
    assert "500,000 steps" in note and "1,000 steps" in note and "at least 0.5 acts" in note
    assert _warning(config, 600_000) is None
    strong = _one_epoch(tmp_path / "s", "normloss-decoupled", optimizer="adam")
    assert _warning(strong, 1000) is None  # the converted default
    # Weight decay too (once exempt): (1 − 0.9)/(0.1·1e-6) = 1,000,000 steps.
    config = _one_epoch(tmp_path / "wd", "weight-decay", factor=1e-6)
    assert "1,000,000 steps" in _warning(config, 10)
    # A cosine schedule halves the mean learning rate and so doubles the timescale.
    cosine = _one_epoch(tmp_path / "c", "weight-decay", "cosine", factor=1e-6)
    assert run_timescale(cosine, 1000)["steps"] == pytest.approx(2_000_000, rel=1e-3)
