import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_normloss import NormLoss


def _model(weights=None):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Conv2D(8, 3, kernel_regularizer=NormLoss(0.05)),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(3, kernel_regularizer=NormLoss(0.05)),
        ]
    )
    if weights is not None:
        model.set_weights(weights)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_mirrored_fit_step_equals_one_device():
    """Keras >= 3.8 divides regularization losses by the replica count under
    a strategy, so the summed gradient carries the penalty exactly once."""
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest.py should have made 2 logical CPUs"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 3, size=(16,))
    keras.utils.set_random_seed(0)
    initial = _model().get_weights()

    single = _model(initial)
    single.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    with strategy.scope():
        mirrored = _model(initial)
    mirrored.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    for a, b, w0 in zip(single.get_weights(), mirrored.get_weights(), initial):
        assert not np.allclose(a, w0)  # the step moved the weights
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
