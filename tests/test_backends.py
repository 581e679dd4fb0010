"""NormLoss on the JAX and PyTorch backends, each in a subprocess (the backend
is fixed when Keras is imported). A backend that is not installed is skipped:
jax is in the test extra; torch is not (its default wheel pulls several GB of
CUDA packages), so the PyTorch test runs where torch is installed."""

import importlib.util
import json

import numpy as np
import pytest
from layer_cases import normloss_gradient_numpy, normloss_numpy
from other_backend import run_script

_SCRIPT = r"""
import json, sys
import numpy as np
import keras
from keras_normloss import NormLoss, WeightRescaling, attach, models

backend = keras.backend.backend()
w = np.asarray(json.loads(sys.stdin.read()), dtype="float32")
reg = NormLoss(0.3, axis=(0, 1, 2))

def value_and_grad(kernel):
    if backend == "jax":
        import jax
        value, grad = jax.value_and_grad(lambda k: reg(k))(kernel)
        return float(value), np.asarray(grad)
    import torch
    k = torch.tensor(kernel, requires_grad=True)
    value = reg(k)
    value.backward()
    return float(value.detach()), k.grad.numpy()

value, grad = value_and_grad(w)
zero_value, zero_grad = value_and_grad(np.zeros_like(w))

model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3),
                          keras.layers.Flatten(), keras.layers.Dense(2)])
attach(model, NormLoss(0.3))
model.compile(keras.optimizers.SGD(0.1), "mse")
history = model.fit(np.ones((4, 6, 6, 3)), np.zeros((4, 2)), epochs=2, verbose=0)
resnet = models.get("resnet8", num_classes=3, input_shape=(16, 16, 3), seed=0,
                    kernel_regularizer=NormLoss(1e-2), kernel_constraint=WeightRescaling())
resnet.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
resnet_loss = resnet.fit(np.ones((4, 16, 16, 3)), np.array([0, 1, 2, 0]), verbose=0).history["loss"]
stem = keras.ops.convert_to_numpy(resnet.get_layer("stem_conv").kernel)
print(json.dumps({
    "resnet_loss": resnet_loss, "resnet_penalties": len(resnet.losses),
    "stem_norms": np.linalg.norm(stem.reshape(-1, stem.shape[-1]), axis=0).tolist(),
    "backend": backend, "value": value, "grad": grad.tolist(),
    "zero_value": zero_value, "zero_grad_finite": bool(np.all(np.isfinite(zero_grad))),
    "losses": len(model.losses), "fit_loss": history.history["loss"],
}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.subprocess
def test_normloss_value_gradient_and_fit_on_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    w = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype("float32") * 0.6
    out = run_script(_SCRIPT, backend, stdin=json.dumps(w.tolist()))
    rows = w.reshape(-1, 4).T
    assert out["value"] == pytest.approx(normloss_numpy(rows, 0.3), rel=1e-6)
    grad = np.asarray(out["grad"], "float32").reshape(-1, 4).T
    np.testing.assert_allclose(grad, normloss_gradient_numpy(rows, 0.3), rtol=1e-5, atol=1e-7)
    assert out["zero_value"] == pytest.approx(0.3 * 4) and out["zero_grad_finite"]
    assert out["losses"] == 2 and all(np.isfinite(out["fit_loss"]))
    # the papers' models (ResNet-8: 7 convolutions and the classifier), with the regularizer and
    # the WRS constraint, train there too
    assert out["resnet_penalties"] == 8 and np.isfinite(out["resnet_loss"][0])
    np.testing.assert_allclose(out["stem_norms"], 1.0, rtol=1e-5)
