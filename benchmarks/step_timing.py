"""What the benchmarks share: timing training steps of a model the same way, on any backend
(`train_on_batch`, jit-compiled where Keras compiles by default: XLA on JAX)."""

import time

import keras
import numpy as np


def sgd_step_timer(model, batch_size, seed=0, optimizer=None):
    """Compiles `model` with SGD (lr 0.1, momentum 0.9, or `optimizer`) and sparse
    cross-entropy on logits, as the papers train, and returns `run(steps) ->
    seconds per step` on one fixed random batch of the model's input and output
    shapes."""
    model.compile(
        optimizer or keras.optimizers.SGD(0.1, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(seed)
    x = keras.ops.convert_to_tensor(
        rng.normal(size=(batch_size, *model.input_shape[1:])).astype("float32")
    )
    y = keras.ops.convert_to_tensor(rng.integers(0, model.output_shape[-1], size=(batch_size,)))

    def run(steps):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        return (time.perf_counter() - start) / steps

    return run
