"""NormLoss on the JAX backend, in a subprocess (the backend is fixed at import)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from layer_cases import normloss_gradient_numpy, normloss_numpy

pytest.importorskip("jax")

_SCRIPT = r"""
import json, sys
import numpy as np
import jax, keras
from keras_normloss import NormLoss, attach, channel_norms

assert keras.backend.backend() == "jax"
w = np.asarray(json.loads(sys.stdin.read()), dtype="float32")
reg = NormLoss(0.3, axis=(0, 1, 2))
value, grad = jax.value_and_grad(lambda k: reg(k))(w)
zero_value, zero_grad = jax.value_and_grad(lambda k: reg(k))(np.zeros_like(w))

model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3),
                          keras.layers.Flatten(), keras.layers.Dense(2)])
attach(model, NormLoss(0.3))
model.compile(keras.optimizers.SGD(0.1), "mse")
history = model.fit(np.ones((4, 6, 6, 3)), np.zeros((4, 2)), epochs=2, verbose=0)
print(json.dumps({
    "value": float(value), "grad": np.asarray(grad).tolist(),
    "zero_value": float(zero_value), "zero_grad_finite": bool(np.all(np.isfinite(zero_grad))),
    "losses": len(model.losses), "fit_loss": history.history["loss"],
}))
"""


def test_normloss_value_gradient_and_fit_on_jax():
    w = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype("float32") * 0.6
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        input=json.dumps(w.tolist()),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = w.reshape(-1, 4).T
    assert out["value"] == pytest.approx(normloss_numpy(rows, 0.3), rel=1e-6)
    grad = np.asarray(out["grad"], "float32").reshape(-1, 4).T
    np.testing.assert_allclose(grad, normloss_gradient_numpy(rows, 0.3), rtol=1e-5, atol=1e-7)
    assert out["zero_value"] == pytest.approx(0.3 * 4) and out["zero_grad_finite"]
    assert out["losses"] == 2 and all(np.isfinite(out["fit_loss"]))
