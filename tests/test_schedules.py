"""keras_normloss.schedules against NumPy formulas, Keras's own warmup, and an optimizer resumed
at a step."""

import keras
import numpy as np
import pytest

from keras_normloss import errors, schedules
from keras_normloss.training import make_config
from keras_normloss.training.build import warmup_steps

LR, TOTAL, WARMUP = 0.1, 40, 8


def _values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def _oracle(kind, step, total=TOTAL, warmup=WARMUP, boundaries=(), decay=0.1):
    if step < warmup:
        return LR * step / warmup
    s, span = step - warmup, total - warmup
    if kind == "linear":
        return LR * (1 - min(s, span) / span)
    if kind == "cosine":
        return LR * 0.5 * (1 + np.cos(np.pi * min(s, span) / span))
    return LR * decay ** sum(step > b for b in boundaries)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, WARMUP])
def test_decay_to_zero_matches_numpy(kind, warmup):
    schedule = schedules.make_schedule(kind, LR, TOTAL, warmup_steps=warmup)
    steps = np.arange(TOTAL + 1)
    expected = [_oracle(kind, s, warmup=warmup) for s in steps]
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5, atol=1e-7)
    assert float(schedule(TOTAL)) == pytest.approx(0.0, abs=1e-7)


def test_step_schedule_with_warmup_decays_after_the_boundary_steps():
    boundaries = (19, 29)  # the last steps at the previous value (epoch e * 10 - 1)
    schedule = schedules.make_schedule(
        "step", LR, TOTAL, warmup_steps=5, decay_boundaries=boundaries, decay=0.1
    )
    steps = np.arange(TOTAL)
    expected = [_oracle("step", s, warmup=5, boundaries=boundaries) for s in steps]
    np.testing.assert_allclose(_values(schedule, steps), expected, rtol=1e-5, atol=1e-8)


def test_linear_warmup_equals_keras_cosine_decay_warmup():
    after = keras.optimizers.schedules.PolynomialDecay(LR, 32, end_learning_rate=0.0)
    ours = schedules.LinearWarmup(after, WARMUP, LR)
    keras_own = keras.optimizers.schedules.CosineDecay(
        0.0, 32, warmup_target=LR, warmup_steps=WARMUP
    )
    steps = np.arange(WARMUP + 1)
    np.testing.assert_allclose(_values(ours, steps), _values(keras_own, steps), rtol=1e-6)


def test_a_resumed_optimizer_has_the_uninterrupted_learning_rate():
    """The schedule is a function of `optimizer.iterations`, which checkpoints hold."""
    schedule = schedules.make_schedule("linear", LR, TOTAL, warmup_steps=WARMUP)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    for step in (0, 3, 8, 21, 39):
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(_oracle("linear", step), abs=1e-7)


def test_warmup_schedule_serializes():
    schedule = schedules.make_schedule("linear", LR, TOTAL, warmup_steps=WARMUP)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    steps = np.arange(TOTAL)
    np.testing.assert_allclose(_values(again, steps), _values(schedule, steps))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="exp"), "expected one of"),
        (dict(kind="linear", warmup_steps=TOTAL), "warmup_steps"),
        (dict(kind="step", warmup_steps=10, decay_boundaries=(5,)), "reaches the first"),
    ],
)
def test_bad_schedules_are_refused(kwargs, message):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message):
        schedules.make_schedule(kind, LR, TOTAL, **kwargs)


def test_config_records_the_schedule_and_papers_presets_keep_their_steps():
    config = make_config(
        "quick", "runs/x", lr_schedule="cosine", warmup_epochs=0.5, validation_split=0.1
    )
    assert (config.lr_schedule, config.warmup_epochs, config.validation_split) == (
        "cosine",
        0.5,
        0.1,
    )
    assert warmup_steps(config, 390) == 195
    paper = make_config("cifar10-resnet110", "runs/y")
    assert (paper.lr_schedule, paper.warmup_epochs, paper.validation_split) == ("step", 0, 0)
    with pytest.raises(errors.UsageError, match="--warmup-epochs"):
        make_config("cifar10-resnet110", "runs/z", warmup_epochs=81)  # past the decay at 80
    with pytest.raises(errors.UsageError, match="--validation-split"):
        make_config("quick", "runs/z", validation_split=1.5)


@pytest.mark.parametrize(
    "kind, options",
    [
        ("constant", {}),
        ("step", {}),  # no boundary: constant
        ("step", {"decay_boundaries": [9, 24], "decay": 0.2}),
        ("step", {"decay_boundaries": [19], "warmup_steps": WARMUP}),
        ("linear", {}),
        ("linear", {"warmup_steps": WARMUP}),
        ("cosine", {}),
        ("cosine", {"warmup_steps": WARMUP}),
    ],
)
def test_mean_learning_rate_is_the_schedules_mean_over_the_run(kind, options):
    """The closed form against the Keras schedule evaluated at every step of the run."""
    schedule = schedules.make_schedule(kind, LR, TOTAL, **options)
    expected = _values(schedule, np.arange(TOTAL)).mean()
    mean = schedules.mean_learning_rate(kind, LR, TOTAL, **options)
    assert mean == pytest.approx(expected, rel=1e-6)


def test_a_step_schedule_without_boundaries_is_constant_and_serializes():
    for kind in ("constant", "step"):
        schedule = schedules.make_schedule(kind, LR, TOTAL)
        np.testing.assert_allclose(_values(schedule, [0, 7, TOTAL]), LR, rtol=1e-6)
        copy = keras.optimizers.schedules.deserialize(
            keras.optimizers.schedules.serialize(schedule)
        )
        assert float(copy(3)) == pytest.approx(LR)
    warm = schedules.make_schedule("constant", LR, TOTAL, warmup_steps=WARMUP)
    np.testing.assert_allclose(_values(warm, [0, 4, WARMUP, TOTAL]), [0, LR / 2, LR, LR], rtol=1e-6)


def test_a_constant_schedule_is_offered_by_the_command_line_and_runs_on_presets_without_decays(
    tmp_path,
):
    """`--lr-schedule step` on a Fashion-MNIST preset (no decay epochs) once ended in an
    IndexError; both it and `constant` now build a constant learning rate."""
    from keras_normloss.training.build import schedule_arguments

    for kind in ("step", "constant"):
        config = make_config("fashion-mnist-mini", tmp_path / kind, lr_schedule=kind)
        arguments = schedule_arguments(config, steps_per_epoch=10)
        schedule = schedules.make_schedule(arguments.pop("kind"), arguments.pop("lr"), **arguments)
        late = float(schedule(10 * config.epochs - 1))
        assert late == pytest.approx(config.lr)
