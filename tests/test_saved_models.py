"""A model saved before the package's layout changed (issue 28) still loads: every serializable
object of keras_normloss in one small model, saved at commit 4c52636 by
tests/data/make_saved_before_layout.py, gives the predictions it gave then."""

import pathlib

import keras
import numpy as np

DATA = pathlib.Path(__file__).parent / "data"


def test_a_model_saved_before_the_layout_loads_and_predicts_as_it_did():
    import keras_normloss  # noqa: F401  (registers the package's serializable objects)

    model = keras.models.load_model(DATA / "saved_before_layout.keras")
    saved = np.load(DATA / "saved_before_layout.npz")
    np.testing.assert_allclose(
        model.predict(saved["inputs"], verbose=0), saved["outputs"], rtol=1e-5, atol=1e-6
    )
    names = [type(layer).__name__ for layer in model.layers]
    assert names == [
        "InputLayer", "Conv2D", "ONI", "Conv2D", "ZeroPadShortcut", "Add",
        "OrthogonalWeightNorm", "GlobalAveragePooling2D", "WeightNorm",
    ]  # fmt: skip
    regularizers = [type(layer.kernel_regularizer).__name__ for layer in model.layers[1:4:2]]
    assert regularizers == ["NormLoss", "SRIP"]
    assert type(model.layers[3].kernel_constraint).__name__ == "WeightRescaling"
    assert type(model.layers[6].layer.kernel_regularizer).__name__ == "SoftOrthogonality"
    assert type(model.optimizer).__name__ == "NormLossSGD"
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["registered_name"] == "keras_normloss>LinearWarmup"
