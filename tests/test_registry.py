"""The table of datasets (keras_normloss.data.registry): what each entry declares is what `load`
does (options refused and ignored, backends, shapes and classes), the rule for other tfds
names, and the order in which an entry's sources are tried."""

import pytest
import tensorflow_datasets as tfds

from keras_normloss import data
from keras_normloss.data import readers, registry, sources

VALUES = {
    "image_size": 48,
    "validation_split": 0.1,
    "train_subset": 100,
    "augment": "crop",
    "crop_padding": "reflect",
}


@pytest.mark.parametrize(
    "name, option", [(n, o) for n, d in registry.DATASETS.items() for o in d.refused]
)
def test_refused_options_fail_before_anything_is_read(name, option):
    with pytest.raises(data.DatasetOptionError, match=f"does not take `{option}`"):
        data.load(name, 8, backend="tensorflow", data_dir="/nowhere", **{option: VALUES[option]})


def test_ignored_options_change_nothing():
    plain = data.load("synthetic", 8, backend="jax", seed=1)
    ignored = dict(data_dir="/nowhere", download=True, crop_padding="reflect", augment="crop")
    ignoring = data.load("synthetic", 8, backend="jax", seed=1, **ignored)
    (a, _), (b, _) = next(plain.train()), next(ignoring.train())
    assert (a == b).all()
    shipped = data.load("fashion_mnist_mini", 8, backend="jax", data_dir="/nowhere")
    assert shipped.info.train_examples == 4000


def test_backends_and_the_lists_derived_from_the_table():
    assert registry.DATASETS["imagenet2012"].backends == ("tensorflow",)
    assert "jax" in registry.DATASETS["cifar10"].backends
    assert data.NUMPY_DATASETS == tuple(n for n in data.DATASETS if n != "imagenet2012")
    assert data.SHIPPED == ("fashion_mnist_mini", "fashion_mnist_small")
    assert data.DEFAULT_AUGMENT == {"mnist": "crop", "synthetic": "none"}
    assert data.CIFAR_STATS["cifar10"] == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert [data.default_augment(n) for n in ("cifar10", "mnist", "svhn_cropped")] == [
        "crop-flip",
        "crop",
        "crop-flip",
    ]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
@pytest.mark.parametrize("name", ["fashion_mnist_mini", "synthetic"])
def test_declared_shape_and_classes_are_what_loads(name, backend):
    entry = registry.DATASETS[name]
    info = data.load(name, 8, backend=backend).info
    assert (info.image_shape, info.num_classes) == (entry.image_shape, entry.num_classes)


def test_other_tfds_names_get_an_entry_from_their_features():
    svhn = registry.get("svhn_cropped")
    assert (svhn.image_shape, svhn.num_classes, svhn.backends) == ((32, 32, 3), 10, ("tensorflow",))
    imagenette = registry.get("imagenette")
    assert imagenette.image_shape is None and imagenette.default_image_size == 64
    with tfds.testing.mock_data(num_examples=8):
        info = data.load("imagenette", 4, backend="tensorflow").info
    assert info.image_shape == (64, 64, 3) and info.num_classes == imagenette.num_classes


def test_unknown_options_and_names():
    with pytest.raises(ValueError, match="Unknown option"):
        data.load("synthetic", 8, colour=True)
    with pytest.raises(ValueError, match="Received: name='cifar10'"):
        data.mnist_like("cifar10", 8)


def _recording(calls, result=None, missing=None):
    def reader(entry, backend, data_dir, download, image_size):
        calls.append(download)
        if missing:
            raise sources.DatasetNotPreparedError(missing)
        return result

    return reader


def test_sources_are_tried_in_order_and_only_the_first_downloads(monkeypatch):
    entry = registry.DATASETS["cifar10"]  # JAX: tfds, then Keras's cache
    tfds_calls, keras_calls = [], []
    monkeypatch.setitem(readers.READERS, "tfds", _recording(tfds_calls, missing="not in tfds."))
    monkeypatch.setitem(readers.READERS, "keras", _recording(keras_calls, result="arrays"))
    assert readers.read(entry, "jax", download=True) == "arrays"
    assert (tfds_calls, keras_calls) == ([True], [False])
    monkeypatch.setitem(readers.READERS, "keras", _recording(keras_calls, missing="not cached."))
    with pytest.raises(data.DatasetNotPreparedError, match="not in tfds. Also: not cached."):
        readers.read(entry, "jax")
    # Without tensorflow-datasets the Keras cache is the first source: it gets `download`.
    monkeypatch.setattr(readers.backends, "tfds_importable", lambda: False)
    monkeypatch.setitem(readers.READERS, "keras", _recording(keras_calls, result="arrays"))
    keras_calls.clear()
    assert readers.read(entry, "jax", download=True) == "arrays" and keras_calls == [True]
    # TensorFlow reads CIFAR from tfds only, as before.
    assert entry.sources_for("tensorflow") == ("tfds",)
