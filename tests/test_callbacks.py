import csv

import keras
import numpy as np
import pytest

from keras_normloss import NormLoss, norm_dynamics
from keras_normloss.callbacks import (
    NormDynamics,
    NormMonitor,
    kernel_norm_statistics,
    read_dynamics,
)


def _model():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.DepthwiseConv2D(2, name="dw"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="head"),
        ]
    )


def test_statistics_match_numpy_over_all_channels():
    model = _model()
    conv = model.get_layer("conv").kernel.numpy()
    dw = model.get_layer("dw").kernel.numpy()
    head = model.get_layer("head").kernel.numpy()
    norms = np.concatenate(
        [
            np.linalg.norm(conv.reshape(-1, 4), axis=0),
            np.linalg.norm(dw.reshape(4, -1), axis=0),  # spatial taps per (in, multiplier)
            np.linalg.norm(head, axis=0),
        ]
    )
    overall, per_kernel = kernel_norm_statistics(model)
    assert overall["norm_mean"] == pytest.approx(norms.mean(), rel=1e-5)
    assert overall["norm_std"] == pytest.approx(norms.std(), rel=1e-4)
    assert overall["norm_min"] == pytest.approx(norms.min(), rel=1e-5)
    assert overall["norm_max"] == pytest.approx(norms.max(), rel=1e-5)
    assert overall["oblique_distance"] == pytest.approx(np.abs(norms - 1).mean(), rel=1e-5)
    assert sorted(per_kernel) == [
        "sequential/conv/kernel",
        "sequential/dw/kernel",
        "sequential/head/kernel",
    ]
    assert per_kernel["sequential/dw/kernel"]["norms"].shape == (4,)


def test_monitor_puts_statistics_in_logs_history_and_tensorboard(tmp_path):
    model = _model()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        np.ones((8, 6, 6, 2)),
        np.zeros((8, 3)),
        epochs=2,
        verbose=0,
        callbacks=[
            NormMonitor(log_dir=tmp_path / "tb", per_kernel_logs=True),
            keras.callbacks.CSVLogger(csv_path),
        ],
    )
    assert len(history.history["oblique_distance"]) == 2
    overall, _ = kernel_norm_statistics(model)
    assert history.history["norm_mean"][-1] == pytest.approx(overall["norm_mean"], rel=1e-6)
    with open(csv_path) as f:
        header = next(csv.reader(f))
    assert "oblique_distance" in header and "sequential/conv/kernel/norm_max" in header
    assert list((tmp_path / "tb" / "norms").glob("events.out.tfevents.*"))


def test_model_without_kernels_gives_empty_statistics():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    assert kernel_norm_statistics(model) == ({}, {})


def test_normloss_training_lowers_logged_oblique_distance():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(
                16, kernel_regularizer=NormLoss(1.0), kernel_initializer="he_normal"
            ),
        ]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(
        np.zeros((32, 8)),
        np.zeros((32, 16)),
        epochs=3,
        batch_size=8,
        verbose=0,
        callbacks=[NormMonitor()],
    )
    d = history.history["oblique_distance"]
    assert d[2] < d[1] < d[0]


def _rotated(theta, dim=50, seed=0):
    """A random unit vector and the same vector turned by `theta` in a random plane."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=dim)
    a /= np.linalg.norm(a)
    b = rng.normal(size=dim)
    b -= b @ a * a
    b /= np.linalg.norm(b)
    return a, np.cos(theta) * a + np.sin(theta) * b


@pytest.mark.parametrize("theta", [1e-7, 1e-4, 0.3, np.pi / 2, 3.0])
def test_angles_are_exact_at_small_and_large_angles(theta):
    """arccos of a float cosine would give 0 (or 2e-8-sized noise) at 1e-7 rad."""
    a, b = _rotated(theta)
    got = norm_dynamics.angles(np.stack([a, 2 * a]), np.stack([3 * b, b]))
    np.testing.assert_allclose(got, [theta, theta], rtol=1e-9)
    # A channel that is (or becomes) zero has no direction: NaN, left out of the statistics.
    assert np.isnan(norm_dynamics.angles(np.zeros((1, 3)), np.ones((1, 3)))).all()
    assert np.isnan(norm_dynamics.angles(np.ones((1, 3)), np.zeros((1, 3)))).all()


def test_channel_rows_follow_the_axis_table():
    kernel = np.arange(2 * 3 * 4 * 5, dtype="float32").reshape(2, 3, 4, 5)
    rows = norm_dynamics.channel_rows(kernel, (0, 1, 2))  # Conv2D: channels last
    np.testing.assert_array_equal(rows[3], kernel[..., 3].ravel())
    rows = norm_dynamics.channel_rows(kernel, (0, 1, 3))  # Conv2DTranspose: second to last
    np.testing.assert_array_equal(rows[2], kernel[:, :, 2, :].ravel())
    rows = norm_dynamics.channel_rows(kernel, (0, 1))  # depthwise: in × multiplier channels
    assert rows.shape == (20, 6)
    np.testing.assert_array_equal(rows[1 * 5 + 2], kernel[:, :, 1, 2].ravel())


def _kinds_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stem_conv")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", name="block_conv")(x)
    z = keras.layers.Conv2D(4, 1, name="block_shortcut_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([y, z]))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_norm_dynamics_measures_one_step_against_numpy(tmp_path):
    """Every statistic of a sampled step against the kernels read before and after it."""
    model = _kinds_model()
    lr = 0.05
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype("float32")
    y = np.ones((4, 3), "float32")
    kernels = ("stem_conv", "block_conv", "block_shortcut_conv", "head")

    def channels():
        return [
            np.moveaxis(model.get_layer(n).kernel.numpy(), -1, 0)
            .reshape(model.get_layer(n).kernel.shape[-1], -1)
            .astype(np.float64)
            for n in kernels
        ]

    before = channels()
    dynamics = NormDynamics(every=1, csv_path=tmp_path / "dynamics.csv")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[dynamics])
    after = channels()
    rows = {r["group"]: r for r in dynamics.rows}
    assert list(rows) == ["all", "stem", "conv", "shortcut", "dense"]
    for group, (old, new) in zip(("stem", "conv", "shortcut", "dense"), zip(before, after)):
        cos = (old * new).sum(1) / np.linalg.norm(old, axis=1) / np.linalg.norm(new, axis=1)
        angle = np.arccos(np.clip(cos, -1, 1))
        row = rows[group]
        assert row["step"] == 1 and row["epoch"] == 1 and row["channels"] == len(old)
        assert row["learning_rate"] == pytest.approx(lr)
        assert row["angular_update"] == pytest.approx(angle.mean(), rel=1e-4)
        assert row["angular_update_rms"] == pytest.approx(np.sqrt((angle**2).mean()), rel=1e-4)
        np.testing.assert_allclose(row["norm_mean"], np.linalg.norm(new, axis=1).mean(), rtol=1e-6)
        relative = np.linalg.norm(new - old, axis=1) / np.linalg.norm(old, axis=1)
        assert row["relative_update"] == pytest.approx(relative.mean(), rel=1e-4)
        effective = lr / np.linalg.norm(old, axis=1) ** 2
        assert row["effective_lr"] == pytest.approx(effective.mean(), rel=1e-5)
    assert rows["all"]["channels"] == sum(len(k) for k in before)
    written = read_dynamics(tmp_path / "dynamics.csv")
    assert [r["group"] for r in written] == list(rows)
    assert written[2]["angular_update"] == pytest.approx(rows["conv"]["angular_update"], rel=1e-5)


def test_norm_dynamics_samples_the_first_step_and_every_nth_and_a_resume_redoes_the_rest(tmp_path):
    model = _kinds_model()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x, y = np.zeros((32, 8, 8, 3), "float32"), np.zeros((32, 3), "float32")
    path = tmp_path / "dynamics.csv"
    first = NormDynamics(every=3, csv_path=path)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[first])  # 16 steps
    assert sorted({r["step"] for r in first.rows}) == [1, 3, 6, 9, 12, 15]
    assert {r["epoch"] for r in first.rows if r["step"] == 9} == {2}
    # As after a resume from a checkpoint at step 7: the rows of steps 9-15 are redone.
    model.optimizer.iterations.assign(7)
    again = NormDynamics(every=3, csv_path=path)
    model.fit(x[:8], y[:8], batch_size=4, epochs=1, verbose=0, callbacks=[again])  # steps 8, 9
    assert [r["step"] for r in read_dynamics(path) if r["group"] == "all"] == [1, 3, 6, 9]
    with pytest.raises(ValueError, match="every"):
        NormDynamics(every=0)


def test_norm_dynamics_reports_the_kernel_a_reparametrized_layer_computes_with():
    from keras_normloss import methods

    applied = methods.apply(_kinds_model(), "wn")
    statistics = norm_dynamics.step_statistics(
        norm_dynamics.kernel_matrices(applied.model),
        norm_dynamics.kernel_matrices(applied.model),
        0.1,
    )
    wrapper = next(
        layer
        for layer in applied.model.layers
        if getattr(layer, "layer", None) is not None and layer.layer.name == "stem_conv"
    )
    effective = keras.ops.convert_to_numpy(wrapper.effective_kernel()).reshape(-1, 4)
    assert statistics["stem"]["norm_mean"] == pytest.approx(
        np.linalg.norm(effective, axis=0).mean(), rel=1e-6
    )
    assert statistics["conv"]["angular_update"] == 0.0


def test_with_steps_per_execution_each_execution_reaching_a_multiple_is_sampled():
    """Keras calls the batch hooks once per execution of k steps: a sample spans those k steps,
    and rows carry the optimizer's count after them."""
    model = _kinds_model()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", steps_per_execution=2)
    x, y = np.zeros((64, 8, 8, 3), "float32"), np.zeros((64, 3), "float32")
    dynamics = NormDynamics(every=3)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[dynamics])  # 16 steps
    # Executions end at steps 2, 4, ..., 16; those that contain 3, 6, 9, 12, 15, and the first.
    assert sorted({r["step"] for r in dynamics.rows}) == [2, 4, 6, 10, 12, 16]
