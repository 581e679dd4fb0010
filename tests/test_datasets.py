"""The datasets beyond the papers': IDX files (MNIST, Fashion-MNIST), the shipped subset, any
tfds image dataset, image folders. Every file is made by the test; nothing is downloaded."""

import gzip
import os

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_normloss import data, models
from keras_normloss.data import sources, tf_sources

FULL_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def _write_idx(path, array, compress=True):
    header = (0x800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        path += ".gz"
        raw = gzip.compress(raw)
    with open(path, "wb") as f:
        f.write(raw)
    return path


def _idx_dataset(directory, n_train=48, n_test=24, size=28, compress=True, seed=0):
    """Four made-up IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = np.arange(n) % 10
        stem_images, stem_labels = sources.IDX_FILES[split]
        _write_idx(os.path.join(directory, stem_images), images, compress)
        _write_idx(os.path.join(directory, stem_labels), labels, compress)
        arrays[split] = (images, labels)
    return arrays


def _trains(pipelines, steps=2):
    """A few SGD steps of the smallest CIFAR ResNet on the pipelines' images."""
    info = pipelines.info
    model = models.get("resnet8", num_classes=info.num_classes, input_shape=info.image_shape)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(pipelines.train(), steps_per_epoch=steps, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    return model


@pytest.fixture
def no_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory_loads_normalises_and_trains(tmp_path, compress):
    written = _idx_dataset(str(tmp_path), compress=compress)
    p = data.load("fashion_mnist", 8, data_dir=str(tmp_path), augment="none")
    assert p.info.image_shape == (28, 28, 1) and p.info.num_classes == 10
    assert (p.info.train_examples, p.info.test_examples) == (48, 24)
    # Normalisation from the training split itself: NumPy's mean and std of the written pixels.
    images, labels = written["train"]
    mean, std = images.mean() / 255.0, images.std() / 255.0
    x_test, y_test = next(iter(p.test))
    expected = (written["test"][0][:8, ..., None] / 255.0 - mean) / std
    np.testing.assert_allclose(x_test.numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(y_test.numpy(), written["test"][1][:8])
    epoch = np.concatenate([x.numpy() for x, _ in p.train().take(6)])  # one pass, permuted
    np.testing.assert_allclose([epoch.mean(), epoch.std()], [0.0, 1.0], atol=1e-4)
    _trains(p)


@pytest.mark.parametrize("name, flips", [("fashion_mnist", True), ("mnist", False)])
def test_28_pixel_augmentation_matches_numpy(tmp_path, name, flips):
    """Each training image is a 28x28 window of the normalised image padded by 4 with zeros;
    Fashion-MNIST's may be mirrored, MNIST's never (a flip changes a digit)."""
    written = _idx_dataset(str(tmp_path), n_train=16)
    p = data.load(name, 16, data_dir=str(tmp_path), seed=3)
    images = written["train"][0][..., None].astype(np.float32) / 255.0
    normalised = (images - images.mean()) / images.std()
    padded = np.pad(normalised, [(0, 0), (4, 4), (4, 4), (0, 0)])
    windows = np.stack(
        [padded[:, dy : dy + 28, dx : dx + 28] for dy in range(9) for dx in range(9)], axis=1
    )
    mirrored = windows[:, :, :, ::-1]
    x, y = next(iter(p.train()))
    any_flipped = False
    for image, label in zip(x.numpy(), y.numpy()):
        same = np.abs(windows[label::10] - image).max(axis=(2, 3, 4)).min()  # label = index % 10
        flipped = np.abs(mirrored[label::10] - image).max(axis=(2, 3, 4)).min()
        assert min(same, flipped) < 1e-4, "not a padded window of a source image"
        any_flipped |= flipped < 1e-4 and same > 1e-4
    assert any_flipped == flips


def test_keras_cache_is_looked_in_and_missing_data_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    _idx_dataset(str(tmp_path / "home" / "datasets" / "fashion-mnist"))
    assert data.load("fashion_mnist", 8).info.source == str(
        tmp_path / "home" / "datasets" / "fashion-mnist"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load("fashion_mnist", 8, data_dir=str(empty))
    message = str(error.value)
    assert str(empty) in message and "apt-get install dataset-fashion-mnist" in message
    assert "--download" in message


def test_mnist_found_nowhere_lists_every_place(no_keras_cache):
    if os.path.isdir("/usr/share/datasets/mnist"):
        pytest.skip("MNIST is installed on this machine")
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load("mnist", 8)
    message = str(error.value)
    assert "keras_home" in message and "/usr/share/datasets/mnist" in message
    assert "mnist.npz" in message


def test_mnist_from_keras_npz(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "datasets")
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "datasets" / "mnist.npz",
        x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        y_train=np.arange(20) % 10,
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=np.arange(10),
    )
    info = data.load("mnist", 4).info
    assert (info.train_examples, info.test_examples, info.image_shape) == (20, 10, (28, 28, 1))


@pytest.mark.parametrize(
    "damage, match",
    [
        ("truncate", "truncated"),
        ("magic", "bad header"),
        ("count", "48 train images but 47 labels"),
        ("label", "outside 0..9"),
    ],
)
def test_malformed_idx_files_fail_cleanly(tmp_path, damage, match):
    _idx_dataset(str(tmp_path))
    images = str(tmp_path / "train-images-idx3-ubyte.gz")
    labels_path = str(tmp_path / "train-labels-idx1-ubyte.gz")
    if damage == "truncate":
        raw = gzip.decompress(open(images, "rb").read())
        open(images, "wb").write(gzip.compress(raw[: len(raw) // 2]))
    elif damage == "magic":
        open(images, "wb").write(gzip.compress(b"<html>not found</html>" * 4))
    elif damage == "count":
        os.remove(labels_path)
        _write_idx(labels_path[:-3], np.arange(47) % 10)
    else:
        os.remove(labels_path)
        _write_idx(labels_path[:-3], np.full(48, 12))
    with pytest.raises(data.MalformedDatasetError, match=match) as error:
        data.load("fashion_mnist", 8, data_dir=str(tmp_path))
    assert str(tmp_path) in str(error.value)


def test_larger_shipped_subset_is_balanced():
    arrays = sources.shipped("fashion_mnist_small")
    assert np.bincount(arrays.train_labels).tolist() == [1500] * 10
    assert np.bincount(arrays.test_labels).tolist() == [300] * 10
    assert arrays.train_images.shape == (15000, 28, 28, 1)


def test_shipped_subset_is_balanced_and_trains():
    p = data.load("fashion_mnist_mini", 16, seed=0)
    arrays = sources.shipped("fashion_mnist_mini")
    assert np.bincount(arrays.train_labels).tolist() == [400] * 10
    assert np.bincount(arrays.test_labels).tolist() == [100] * 10
    assert p.info.image_shape == (28, 28, 1) and not p.info.synthetic
    _trains(p)


@pytest.mark.skipif(
    not os.path.isdir(FULL_FASHION_MNIST), reason="needs apt-get install dataset-fashion-mnist"
)
@pytest.mark.parametrize(
    "name, train_per_class, test_per_class",
    [("fashion_mnist_mini", 400, 100), ("fashion_mnist_small", 1500, 300)],
)
def test_shipped_subset_is_the_first_images_of_each_class(name, train_per_class, test_per_class):
    full = sources.read_idx_dir(FULL_FASHION_MNIST)
    mini = sources.shipped(name)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = getattr(full, f"{split}_labels")
        index = np.sort(
            np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
        )
        np.testing.assert_array_equal(
            getattr(mini, f"{split}_images"), getattr(full, f"{split}_images")[index]
        )
        np.testing.assert_array_equal(getattr(mini, f"{split}_labels"), labels[index])


def test_any_tfds_image_dataset_takes_its_shape_and_classes_from_the_data():
    with tfds.testing.mock_data(num_examples=24):
        p = data.load("svhn_cropped", 8, augment="crop")
    assert p.info.image_shape == (32, 32, 3) and p.info.num_classes == 10
    x, _ = next(iter(p.train()))
    assert x.shape == (8, 32, 32, 3)
    _trains(p)


def test_tfds_images_of_varying_size_are_resized():
    with tfds.testing.mock_data(num_examples=12):
        p = data.load("imagenette", 4, image_size=40)
    assert p.info.image_shape == (40, 40, 3) and p.info.num_classes == 10
    x, _ = next(iter(p.train()))
    assert x.shape == (4, 40, 40, 3)


def test_dataset_names_are_checked_without_reading_data():
    data.check_name("svhn_cropped")
    with pytest.raises(ValueError, match="tensorflow-datasets image-classification"):
        data.check_name("no_such_dataset")
    with pytest.raises(ValueError, match="not image classification|no \\(image, label\\)"):
        data.check_name("imdb_reviews")


def test_options_a_dataset_cannot_use_are_refused():
    with pytest.raises(ValueError, match="does not take `image_size`"):
        data.load("fashion_mnist_mini", 8, image_size=64)


COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fox": (30, 30, 200)}


def _image_folder(root, classes=tuple(COLOURS), per_class=10, size=(20, 30)):
    """One flat colour per class, so that a label can be checked against its image."""
    for c in classes:
        os.makedirs(os.path.join(root, c), exist_ok=True)
        for i in range(per_class):
            pixels = np.broadcast_to(np.array(COLOURS[c], "float32"), (*size, 3))
            keras.utils.save_img(os.path.join(root, c, f"{i:02d}.png"), pixels, scale=False)


def _colours_match_labels(images, labels):
    names = sorted(COLOURS)
    for image, label in zip(images, labels):
        np.testing.assert_allclose(image.mean(axis=(0, 1)), COLOURS[names[label]], atol=1)


def test_image_folder_holds_out_every_fifth_file_of_each_class_and_trains(tmp_path):
    _image_folder(str(tmp_path))
    arrays = tf_sources.image_folder(str(tmp_path), 16)
    assert np.bincount(arrays.train_labels).tolist() == [8, 8, 8]
    assert np.bincount(arrays.test_labels).tolist() == [2, 2, 2]  # every class in both splits
    _colours_match_labels(arrays.train_images, arrays.train_labels)
    _colours_match_labels(arrays.test_images, arrays.test_labels)
    p = data.load("folder", 4, data_dir=str(tmp_path), image_size=16)
    assert p.info.num_classes == 3 and p.info.image_shape == (16, 16, 3)
    assert (p.info.train_examples, p.info.test_examples) == (24, 6)
    _trains(p)


@pytest.mark.parametrize("test_folder", ["test", "val", "validation"])
def test_image_folder_with_split_directories(tmp_path, test_folder):
    _image_folder(str(tmp_path / "train"), per_class=4)
    _image_folder(str(tmp_path / test_folder), per_class=2)
    info = data.load("folder", 4, data_dir=str(tmp_path), image_size=8).info
    assert (info.train_examples, info.test_examples, info.num_classes) == (12, 6, 3)


def test_image_folder_of_split_folders_under_other_names_is_refused(tmp_path):
    _image_folder(str(tmp_path / "training"), per_class=2)
    _image_folder(str(tmp_path / "holdout"), per_class=2)
    with pytest.raises(data.MalformedDatasetError, match="holdout/ holds folders, not images"):
        data.load("folder", 4, data_dir=str(tmp_path), image_size=8)


def test_image_folder_missing_empty_or_damaged(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError, match="needs --data-dir"):
        data.load("folder", 4)
    with pytest.raises(data.DatasetNotPreparedError, match="does not exist"):
        data.load("folder", 4, data_dir=str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    (empty / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(data.MalformedDatasetError, match=str(empty)):
        data.load("folder", 4, data_dir=str(empty))
    damaged = tmp_path / "damaged"
    _image_folder(str(damaged), per_class=3)
    (damaged / "dog" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(data.MalformedDatasetError, match="cannot decode"):
        data.load("folder", 4, data_dir=str(damaged), image_size=8)


def test_damaged_gzip_body_is_malformed_not_a_traceback(tmp_path):
    _idx_dataset(str(tmp_path))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[20:60] = b"\xff" * 40  # inside the deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(data.MalformedDatasetError, match="t10k-images"):
        data.load("fashion_mnist", 8, data_dir=str(tmp_path))


def test_synthetic_data_refuses_an_image_size():
    with pytest.raises(data.DatasetOptionError, match="image_size"):
        data.load("synthetic", 8, image_size=16)
