"""The NumPy pipelines of the Keras backends other than TensorFlow (keras_normloss.data,
backend="jax") against NumPy oracles written here: exact resumption, every image once per
epoch, crops and flips of the padded normalised images, the normalisation, the validation split
and the synthetic images of the tf.data path; and a process that never imports TensorFlow."""

import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from keras_normloss import data
from keras_normloss.data import numpy_pipelines, sources, validation
from keras_normloss.data.info import DataInfo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _arrays(n_train=24, n_test=10, size=8, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return sources.Arrays(
        rng.integers(0, 256, (n_train, size, size, channels), dtype=np.uint8),
        np.arange(n_train) % 4,
        rng.integers(0, 256, (n_test, size, size, channels), dtype=np.uint8),
        np.arange(n_test) % 4,
        4,
        source="made here",
    )


def _stats(images):
    """Per-channel mean and standard deviation in [0, 1] units, NumPy's float64."""
    pixels = images.reshape(-1, images.shape[-1]) / 255.0
    return pixels.mean(0), pixels.std(0)


def _pipelines(arrays, batch_size, **kwargs):
    info = DataInfo("made", 4, arrays.train_images.shape[1:], len(arrays.train_labels), 10)
    stats = data.augmentation.channel_stats(arrays.train_images)
    return numpy_pipelines.in_memory(info, arrays, stats, batch_size, **kwargs)


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


def test_a_resumed_stream_is_the_tail_of_the_whole_stream():
    p = data.load("fashion_mnist_mini", 500, backend="jax", seed=3)  # 8 steps per epoch
    whole = _take(p.train(), 3 * 8)
    for first_epoch, skip in ((1, 3), (0, 13), (2, 0)):  # (0, 13) is (1, 5)
        resumed = _take(p.train(first_epoch, skip), 3)
        start = first_epoch * 8 + skip
        for (xa, ya), (xb, yb) in zip(whole[start : start + 3], resumed):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    x, y = whole[0]
    assert (x.shape, x.dtype, y.shape, y.dtype) == ((500, 28, 28, 1), np.float32, (500,), np.int32)


def test_every_training_image_once_per_epoch_in_a_new_order():
    arrays = _arrays()
    p = _pipelines(arrays, 6, augment="none", seed=1)  # 4 steps: one pass
    mean, std = _stats(arrays.train_images)
    stream = p.train()
    epochs = [np.concatenate([next(stream)[0] for _ in range(4)]) for _ in range(2)]
    for epoch in epochs:
        pixels = np.rint((epoch * std + mean) * 255.0).astype(np.uint8)
        assert sorted(i.tobytes() for i in pixels) == sorted(
            i.tobytes() for i in arrays.train_images
        )
    assert not np.array_equal(epochs[0], epochs[1])


def test_an_epoch_longer_than_the_data_makes_several_passes():
    arrays = _arrays()
    p = _pipelines(arrays, 8, augment="none", steps_per_epoch=5)  # 40 images of 24
    labels = np.concatenate([y for _, y in _take(p.train(), 5)])
    mean, std = _stats(arrays.train_images)
    images = np.concatenate([x for x, _ in _take(p.train(), 5)])
    pixels = np.rint((images * std + mean) * 255.0).astype(np.uint8)
    keys = [i.tobytes() for i in pixels]
    assert sorted(keys[:24]) == sorted(i.tobytes() for i in arrays.train_images)  # a full pass
    assert len(set(keys[24:])) == 16 and len(labels) == 40  # then 16 distinct of the next


def _reflect_index(i, n):
    """Index of padded position `i` (from -border) in a reflection without the edge."""
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


def _windows(normalised, border, reflect):
    """Every crop window of every padded image, and mirrored: (N, 2 * windows, H, W, C)."""
    n, h, w, c = normalised.shape
    side = h + 2 * border
    padded = np.zeros((n, side, side, c), np.float32)
    for y in range(side):
        for x in range(side):
            sy, sx = y - border, x - border
            if reflect:
                padded[:, y, x] = normalised[:, _reflect_index(sy, h), _reflect_index(sx, w)]
            elif 0 <= sy < h and 0 <= sx < w:
                padded[:, y, x] = normalised[:, sy, sx]
    crops = [
        padded[:, dy : dy + h, dx : dx + w]
        for dy in range(side - h + 1)
        for dx in range(side - w + 1)
    ]
    crops = np.stack(crops, axis=1)
    return np.concatenate([crops, crops[:, :, :, ::-1]], axis=1)


@pytest.mark.parametrize(
    "augment, crop_padding", [("crop-flip", "zeros"), ("crop-flip", "reflect"), ("crop", "zeros")]
)
def test_augmented_images_are_windows_of_the_padded_normalised_images(augment, crop_padding):
    arrays = _arrays(size=16)  # border 2: five offsets each way
    p = _pipelines(arrays, 24, augment=augment, crop_padding=crop_padding, seed=5)
    mean, std = _stats(arrays.train_images)
    normalised = ((arrays.train_images / 255.0 - mean) / std).astype(np.float32)
    windows = _windows(normalised, 2, crop_padding == "reflect")  # (24, 50, 16, 16, 3)
    offsets, flipped = set(), 0
    for images, labels in _take(p.train(), 3):
        for image, label in zip(images, labels):
            error = np.abs(windows[label::4] - image).max(axis=(2, 3, 4))  # label = index % 4
            source, window = np.unravel_index(np.argmin(error), error.shape)
            assert error[source, window] < 1e-5, "not a window of a padded normalised image"
            offsets.add(window % 25)
            flipped += window >= 25 and error[source, window % 25] > 1e-5
    assert len(offsets) > 10  # the crops vary
    assert (flipped > 0) == (augment == "crop-flip")


def test_test_and_validation_batches_are_normalised_by_the_trained_images_statistics():
    arrays = _arrays(n_train=40)
    split = validation.Split(arrays, 8)
    p = _pipelines(split, 16, seed=0)
    mean, std = _stats(split.train_images)
    for batches, images, labels in (
        (p.test, arrays.test_images, arrays.test_labels),
        (p.validation, split.validation_images, split.validation_labels),
    ):
        got = [batches[i] for i in range(len(batches))]
        assert len(batches) == -(-len(labels) // 16) and len(got[-1][1]) == len(labels) % 16 or 16
        np.testing.assert_allclose(
            np.concatenate([x for x, _ in got]), (images / 255.0 - mean) / std, atol=1e-5
        )
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels)
        again = np.concatenate([x for x, _ in batches])  # iterable again, same batches
        np.testing.assert_array_equal(again, np.concatenate([x for x, _ in got]))
    with pytest.raises(IndexError):
        p.test[len(p.test)]


def test_validation_test_and_synthetic_images_equal_the_tf_data_paths():
    """Same held-out images, same statistics, same float32 arithmetic: the same bits."""
    tf_path, numpy_path = (
        data.load("fashion_mnist_mini", 256, seed=0, validation_split=0.1, backend=backend)
        for backend in ("tensorflow", "jax")
    )
    assert tf_path.info == numpy_path.info
    for split in ("validation", "test"):
        a = np.concatenate([x.numpy() for x, _ in getattr(tf_path, split)])
        b = np.concatenate([x for x, _ in getattr(numpy_path, split)])
        np.testing.assert_array_equal(a, b)
    tf_synthetic, numpy_synthetic = (
        data.load("synthetic", 32, seed=4, backend=b) for b in ("tensorflow", "jax")
    )
    np.testing.assert_array_equal(
        np.concatenate([x.numpy() for x, _ in tf_synthetic.test]),
        np.concatenate([x for x, _ in numpy_synthetic.test]),
    )
    epoch = np.concatenate([x for x, _ in _take(numpy_synthetic.train(), 16)])
    tf_epoch = np.concatenate([x.numpy() for x, _ in tf_synthetic.train().take(16)])
    assert sorted(i.tobytes() for i in epoch) == sorted(i.tobytes() for i in tf_epoch)


def _cifar_cache(home, name, per_batch=3):
    """Krizhevsky's pickled batches (dicts of byte keys), as Keras 3 extracts them."""
    spec = sources.KERAS_CIFAR[name]
    folder = home / "datasets" / spec["target"] / spec["folder"]
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for batch in spec["train"] + spec["test"]:
        images = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, spec["num_classes"], per_batch)]
        with open(folder / batch, "wb") as f:
            pickle.dump({b"data": images, spec["label_key"].encode(): labels}, f)
        written[batch] = (images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels)
    return folder, written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_keras_cache_and_its_archive(tmp_path, monkeypatch, name):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder, written = _cifar_cache(tmp_path, name)
    spec = sources.KERAS_CIFAR[name]
    arrays = sources.keras_cifar(name)
    np.testing.assert_array_equal(
        arrays.train_images, np.concatenate([written[b][0] for b in spec["train"]])
    )
    np.testing.assert_array_equal(arrays.test_labels, written[spec["test"][0]][1])
    archive = tmp_path / "elsewhere" / spec["archive"]
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=spec["folder"])
    from_archive = sources.keras_cifar(name, data_dir=str(archive.parent))
    np.testing.assert_array_equal(from_archive.train_images, arrays.train_images)
    assert from_archive.source == str(archive)


def test_cifar_on_jax_reads_keras_cache_and_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # nothing prepared there
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load("cifar10", 4, backend="jax")
    message = str(error.value)
    assert "--download" in message and str(tmp_path / "datasets") in message
    _cifar_cache(tmp_path, "cifar10")
    p = data.load("cifar10", 4, backend="jax")
    assert (p.info.train_examples, p.info.image_shape) == (15, (32, 32, 3))
    images, _ = next(p.train())
    assert images.shape == (4, 32, 32, 3)


@pytest.mark.parametrize("name", ["imagenet2012", "svhn_cropped"])
def test_tf_data_only_datasets_say_what_they_need(name):
    with pytest.raises(data.DatasetBackendError, match="needs the TensorFlow backend") as error:
        data.load(name, 8, backend="jax")
    assert "\n" not in str(error.value)


def test_bad_backend_and_position():
    with pytest.raises(ValueError, match="Received: backend='mxnet'"):
        data.load("synthetic", 8, backend="mxnet")
    with pytest.raises(ValueError, match="first_epoch=-1"):
        data.load("synthetic", 8, backend="jax").train(-1)


BLOCKED = """
import sys, warnings
sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError
sys.modules["tensorflow_datasets"] = None
import keras
from keras_normloss import data
p = data.load("fashion_mnist_mini", 200, backend="jax", seed=0, validation_split=0.1)
x, y = next(p.train())
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
model.compile(
    "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    # shuffle=False as the training command passes it: the stream is shuffled already (the
    # default True warns that a generator is not shuffled).
    history = model.fit(p.train(), steps_per_epoch=3, epochs=2, validation_data=p.validation,
                        shuffle=False, verbose=0)
    test = model.evaluate(p.test, verbose=0, return_dict=True)
print("BACKEND", keras.backend.backend(), x.shape, sorted(history.history), test["accuracy"] > 0)
print("WARNINGS", [str(w.message)[:120] for w in caught])
print("TENSORFLOW", [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets") and sys.modules[m] is not None])
"""


@pytest.mark.subprocess
def test_jax_path_loads_and_trains_without_tensorflow():
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["BACKEND"].startswith("jax (200, 28, 28, 1)"), result.stdout
    assert "val_loss" in lines["BACKEND"] and lines["BACKEND"].endswith("True")
    assert lines["WARNINGS"] == "[]", lines["WARNINGS"]
    assert lines["TENSORFLOW"] == "[]", lines["TENSORFLOW"]
