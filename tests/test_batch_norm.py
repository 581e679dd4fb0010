import csv
import json

import keras
import numpy as np
import pytest
from other_backend import run_script

from keras_normloss import batch_norm, data, train


def _tiny_model():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotNormal(seed=1))(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_recompute_statistics_is_the_plain_average_of_the_batches_statistics():
    model = _tiny_model()
    rng = np.random.default_rng(0)
    # Batches of different scales: an exponential moving average would weigh the last most.
    batches = [(rng.normal(size=(16, 6)) * s + s).astype("float32") for s in (1.0, 2.0, 5.0)]
    dense, bn = model.layers[1], model.layers[2]
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    outputs = [b @ kernel + bias for b in batches]  # the BatchNorm's inputs (NumPy oracle)

    used = batch_norm.recompute_statistics(model, [(b, None) for b in batches] + [batches[0]], 3)

    assert used == 3 and bn.momentum == 0.9  # the layer's momentum is restored
    np.testing.assert_allclose(
        np.asarray(bn.moving_mean), np.mean([o.mean(0) for o in outputs], 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(bn.moving_variance), np.mean([o.var(0) for o in outputs], 0), rtol=1e-4
    )
    np.testing.assert_allclose(dense.get_weights()[0], kernel)  # no weight moved


def test_recompute_statistics_uses_what_there_is_and_refuses_a_bad_count():
    model = _tiny_model()
    assert batch_norm.recompute_statistics(model, [np.ones((4, 6), "float32")], 5) == 1
    with pytest.raises(ValueError, match="num_batches"):
        batch_norm.recompute_statistics(model, [], 0)
    with pytest.raises(ValueError, match="num_batches"):
        batch_norm.PreciseBatchNorm([], 2.5)
    # Weights that diverged give non-finite statistics: the previous ones are kept.
    bn = model.layers[2]
    before = np.asarray(bn.moving_variance).copy()
    assert batch_norm.recompute_statistics(model, [np.full((4, 6), 1e38, "float32")], 1) == 0
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), before)
    # Statistics already non-finite are repaired (0·inf would have kept them NaN).
    bn.moving_variance.assign(np.full((4,), np.inf, "float32"))
    assert batch_norm.recompute_statistics(model, [np.ones((4, 6), "float32")], 1) == 1
    assert np.all(np.isfinite(np.asarray(bn.moving_variance)))

    # A batch that raises leaves the statistics as they were, not a partial average.
    def failing():
        yield np.ones((4, 6), "float32")
        raise RuntimeError("the input pipeline failed")

    before = np.asarray(bn.moving_mean).copy()
    with pytest.raises(RuntimeError):
        batch_norm.recompute_statistics(model, failing(), 3)
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), before)
    assert bn.momentum == 0.9
    with pytest.raises(ValueError, match="num_batches"):
        batch_norm.recompute_statistics(model, [], True)
    without = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    assert batch_norm.recompute_statistics(without, [np.ones((4, 6), "float32")], 5) == 0


@pytest.mark.end_to_end
def test_a_run_with_precise_bn_evaluates_with_the_statistics_of_its_last_epoch(tmp_path):
    """`--precise-bn 3`: the saved model's statistics are those of the first three batches of
    the last epoch's training pass, at the final weights (recomputing them changes nothing),
    and not the moving averages that training left (which differ)."""
    out = tmp_path / "run"
    args = ["--preset", "quick", "--dataset", "synthetic", "--batch-size", "16"]
    args += ["--model", "resnet8", "--epochs", "2", "--steps-per-epoch", "3"]
    args += ["--precise-bn", "3", "--dynamics-every", "0", "--output", str(out)]
    assert train.main(args) == 0
    assert json.loads((out / "config.json").read_text())["precise_bn"] == 3

    model = keras.saving.load_model(out / "model.keras")
    layers = batch_norm.batch_norm_layers(model)
    saved = [np.asarray(layer.moving_variance) for layer in layers]
    pipelines = data.load("synthetic", 16, seed=0, steps_per_epoch=3)
    batch_norm.recompute_statistics(model, pipelines.train(1), 3)
    for layer, variance in zip(layers, saved):
        np.testing.assert_allclose(np.asarray(layer.moving_variance), variance, rtol=1e-4)
    batch_norm.recompute_statistics(model, pipelines.train(0), 3)  # other batches: other values
    assert not np.allclose(np.asarray(layers[0].moving_variance), saved[0], rtol=1e-4)
    # The last epoch was evaluated with these statistics: the logged test error is the saved
    # model's (it would be the moving averages' had they been recomputed after the evaluation).
    model = keras.saving.load_model(out / "model.keras")
    scores = model.evaluate(pipelines.test, return_dict=True, verbose=0)
    with open(out / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["test_error"]) == pytest.approx(1 - scores["accuracy"], abs=1e-6)
    assert float(last["test_cross_entropy"]) == pytest.approx(scores["cross_entropy"], rel=1e-4)


_ON_JAX = """
import json, keras, numpy as np
from keras_normloss import batch_norm
inputs = keras.Input((6,))
x = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotNormal(seed=1))(inputs)
model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(x))
rng = np.random.default_rng(0)
batches = [(rng.normal(size=(16, 6)) * s + s).astype("float32") for s in (1.0, 2.0, 5.0)]
kernel, bias = (np.asarray(w) for w in model.layers[1].get_weights())
outputs = [b @ kernel + bias for b in batches]
used = batch_norm.recompute_statistics(model, batches, 3)
bn = model.layers[2]
print(json.dumps({
    "backend": keras.backend.backend(), "used": used, "momentum": bn.momentum,
    "mean_error": float(np.max(np.abs(np.asarray(bn.moving_mean)
                                      - np.mean([o.mean(0) for o in outputs], 0)))),
    "variance_error": float(np.max(np.abs(np.asarray(bn.moving_variance)
                                          - np.mean([o.var(0) for o in outputs], 0)))),
}))
"""


@pytest.mark.subprocess
def test_recompute_statistics_on_jax():
    """Eager calls update BatchNormalization's variables on JAX too (the JAX training path)."""
    out = run_script(_ON_JAX, "jax")
    assert out["used"] == 3 and out["momentum"] == 0.9
    assert out["mean_error"] < 1e-5 and out["variance_error"] < 1e-4
