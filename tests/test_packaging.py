"""The install without TensorFlow: requirements-jax.txt lists pyproject.toml's base dependencies
minus TensorFlow's, plus the `jax` extra, so that the two never drift apart."""

import pathlib
import re

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The base dependencies that exist for TensorFlow: the backend, its datasets, what tfds needs
# undeclared, and TensorBoard's writer.
TENSORFLOW_ONLY = {"tensorflow", "tensorflow-datasets", "importlib-resources", "tensorboard"}


def _name(requirement):
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _requirements_file():
    lines = (ROOT / "requirements-jax.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_jax_is_the_base_without_tensorflow_plus_the_jax_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = project["dependencies"]
    expected = [r for r in base if _name(r) not in TENSORFLOW_ONLY]
    expected += project["optional-dependencies"]["jax"]
    assert sorted(_requirements_file()) == sorted(expected)
    assert not {_name(r) for r in _requirements_file()} & TENSORFLOW_ONLY
    assert TENSORFLOW_ONLY <= {_name(r) for r in base}, "a TensorFlow dependency was renamed"


def test_the_install_line_is_written_in_the_requirements_file():
    text = (ROOT / "requirements-jax.txt").read_text()
    assert "pip install -r requirements-jax.txt && pip install --no-deps -e ." in text


@pytest.mark.subprocess
def test_import_without_tensorflow_starts_keras_on_jax(tmp_path):
    """After the install without TensorFlow, `import keras_normloss` works with nothing set:
    Keras's own default (tensorflow, which it also writes into keras.json) would fail. It
    records jax in keras.json (its other settings kept), so that a later process that imports
    `keras` first, as the README's snippet does, or loads a saved model, starts on JAX too."""
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "keras.json").write_text(json.dumps({"backend": "tensorflow", "epsilon": 1e-5}))
    blocked = (
        "import importlib.abc, sys\n"
        "class NoTensorFlow(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(KERAS_HOME=str(tmp_path), JAX_PLATFORMS="cpu")

    def run(script):
        proc = subprocess.run(
            [sys.executable, "-c", blocked + script], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()

    assert run(
        "import keras_normloss, keras\n"
        "print(keras.backend.backend(), 'tensorflow' in sys.modules)\n"
    )[-2:] == ["jax", "False"]
    assert json.loads((tmp_path / "keras.json").read_text()) == {"backend": "jax", "epsilon": 1e-5}
    # A new process that imports keras first, saves a model, and a third that loads it.
    model = str(tmp_path / "m.keras")
    run(
        "import keras\n"
        "m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])\n"
        f"m.save({model!r}); print(keras.backend.backend())\n"
    )
    assert (
        run(f"import keras; keras.models.load_model({model!r}); print(keras.backend.backend())")[-1]
        == "jax"
    )


def test_the_version_is_written_once():
    """pyproject.toml reads `keras_normloss.__version__` (it was written in both)."""
    import importlib.metadata

    import keras_normloss

    pyproject = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "keras_normloss.__version__"
    }
    assert importlib.metadata.version("keras-normloss") == keras_normloss.__version__
