# Run at commit 4c52636 (before the layout of issue 28), from the repository root:
#   python tests/data/make_saved_before_layout.py
# Kept as it ran then: its import paths are those of that commit.
"""Makes tests/data/saved_before_layout.keras (every serializable object of keras_normloss in one
small model, trained one step) and its inputs and predictions, at the commit before the move."""

import keras
import numpy as np

import keras_normloss as nl
from keras_normloss import optimizers as nlo
from keras_normloss import schedules
from keras_normloss.models.building_blocks import ZeroPadShortcut

keras.utils.set_random_seed(0)
inputs = keras.Input((6, 6, 3))
x = keras.layers.Conv2D(4, 3, padding="same", kernel_regularizer=nl.NormLoss(1e-3))(inputs)
x = nl.ONI(keras.layers.Conv2D(4, 3, padding="same"))(x)
y = ZeroPadShortcut(8, stride=2)(x)
x = keras.layers.Conv2D(
    8,
    3,
    strides=2,
    padding="same",
    kernel_regularizer=nl.SRIP(1e-2),
    kernel_constraint=nl.WeightRescaling(),
)(x)
x = keras.layers.Add()([x, y])
x = nl.OrthogonalWeightNorm(
    keras.layers.Conv2D(8, 1, kernel_regularizer=nl.SoftOrthogonality(1e-2))
)(x)
x = keras.layers.GlobalAveragePooling2D()(x)
x = nl.WeightNorm(keras.layers.Dense(5, kernel_regularizer=nl.weight_decay(5e-4)))(x)
model = keras.Model(inputs, x)
schedule = schedules.make_schedule("step", 0.1, 10, warmup_steps=2, decay_boundaries=(5,))
model.compile(
    nlo.NormLossSGD(schedule, momentum=0.9, normloss_factor=1e-3, normloss_axes=model), "mse"
)
rng = np.random.default_rng(0)
data = rng.normal(size=(4, 6, 6, 3)).astype("float32")
model.fit(data, rng.normal(size=(4, 5)).astype("float32"), epochs=1, verbose=0)
model.save("tests/data/saved_before_layout.keras")
np.savez("tests/data/saved_before_layout.npz", inputs=data, outputs=model.predict(data, verbose=0))
print(type(schedule).__name__, [type(l).__name__ for l in model.layers])
