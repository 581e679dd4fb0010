import csv

import keras
import numpy as np
import pytest

from keras_normloss import NormLoss
from keras_normloss.callbacks import NormMonitor, kernel_norm_statistics


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
