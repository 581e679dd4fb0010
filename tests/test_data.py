import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_normloss import data


def _batches(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_synthetic_shapes_and_labelling():
    p = data.synthetic(16, seed=1, train_examples=64, test_examples=40)
    assert p.info.synthetic and p.info.num_classes == 10
    x, y = next(iter(p.train()))
    assert x.shape == (16, 32, 32, 3) and y.shape == (16,)
    assert p.info.steps_per_epoch(16) == 4 and p.info.test_steps(16) == 3
    assert sum(int(b[1].shape[0]) for b in p.test) == 40


def test_training_stream_resumes_exactly_mid_epoch():
    p = data.synthetic(8, seed=3, train_examples=64)
    full = _batches(p.train(), 8 * 3)  # three epochs of 8 steps
    resumed = _batches(p.train(first_epoch=1, skip_steps=5), 8 * 2 - 5)
    for (xa, ya), (xb, yb) in zip(full[13:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_epochs_are_shuffled_differently():
    p = data.synthetic(64, seed=0, train_examples=64)
    (_, y0), (_, y1) = _batches(p.train(), 2)
    assert sorted(y0) == sorted(y1) and not np.array_equal(y0, y1)


def test_cifar_pipeline_on_mocked_tfds():
    with tfds.testing.mock_data(num_examples=40):
        p = data.cifar("cifar10", 8, seed=0)
    assert p.info.train_examples == 40 and p.info.test_examples == 40  # counted, splits are empty
    x, y = next(iter(p.train()))
    assert x.shape == (8, 32, 32, 3) and x.dtype == tf.float32 and y.shape == (8,)
    xt, _ = next(iter(p.test))
    assert abs(float(tf.reduce_mean(xt))) < 3.0  # normalised, not 0..255


def test_cifar_augmentation_pads_crops_and_flips():
    """The crop of a 4-padded image is a shifted window: some border pixels are
    the padding, zero after normalisation (fb.resnet.torch pads the normalised
    image)."""
    with tfds.testing.mock_data(num_examples=64):
        p = data.cifar("cifar100", 64, seed=0)
    x, _ = next(iter(p.train()))
    is_pad = np.all(x.numpy() == 0.0, axis=-1)
    shifted = np.mean([is_pad[i].any() for i in range(64)])
    assert 0.5 < shifted <= 1.0  # a crop offset of 0 on both axes is rare (1/81)


def test_imagenet_preprocessing_shapes():
    image = tf.random.uniform((300, 400, 3), maxval=255)
    crop = data.pipelines._random_resized_crop(image, tf.constant([1, 2], tf.int64), 224)
    assert crop.shape == (224, 224, 3)
    center = data.pipelines._resize_and_center_crop(image, 256, 224)
    assert tuple(center.shape) == (224, 224, 3)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Received: dataset='no_such_dataset'"):
        data.load("no_such_dataset", 8)


def test_unprepared_dataset_fails_fast_with_instructions(tmp_path, caplog):
    """No mock: with no network, tfds would retry for minutes; we must not. Nor may tfds's
    warning ("Variant folder ... has no dataset_info.json") come before the one-line error."""
    start = time.monotonic()
    with pytest.raises(data.DatasetNotPreparedError) as info:
        data.cifar("cifar10", 8, data_dir=str(tmp_path))
    assert not [r for r in caplog.records if r.name == "absl"], caplog.text
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert (
        "not prepared" in message and str(tmp_path) in message and "tfds build cifar10" in message
    )


def test_imagenet_pipeline_on_mocked_tfds():
    with tfds.testing.mock_data(num_examples=12):
        p = data.imagenet(4, image_size=64)
    assert p.info.num_classes == 1000 and p.info.train_examples == 12
    x, y = next(iter(p.train()))
    xt, _ = next(iter(p.test))
    assert x.shape == (4, 64, 64, 3) and xt.shape == (4, 64, 64, 3) and y.shape == (4,)


@pytest.mark.parametrize(
    "crop_padding, numpy_mode", [("zeros", "constant"), ("reflect", "reflect")]
)
def test_cifar_crop_padding_matches_numpy(crop_padding, numpy_mode):
    """Every augmented image is a 32x32 window (maybe flipped) of one
    normalised source image padded by 4 as NumPy pads it: zeros, the mean
    colour (fb.resnet.torch) or a reflection (the Wide ResNet code)."""
    with tfds.testing.mock_data(num_examples=8):
        p = data.cifar("cifar10", 8, seed=0, crop_padding=crop_padding)
        raw = tfds.load("cifar10", split="train", as_supervised=True)
        sources = np.stack([x.numpy() for x, _ in raw]).astype("float32")
    mean, std = (np.array(v, "float32") for v in data.CIFAR_STATS["cifar10"])
    x, _ = next(iter(p.train()))
    images = x.numpy()
    normalised = (sources / 255.0 - mean) / std
    padded = np.pad(normalised, [(0, 0), (4, 4), (4, 4), (0, 0)], mode=numpy_mode)
    windows = np.stack(
        [padded[:, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)], axis=1
    )
    windows = np.concatenate([windows, windows[:, :, :, ::-1]], axis=1)  # (8, 162, 32, 32, 3)
    for image in images:
        error = np.abs(windows - image).max(axis=(2, 3, 4))
        assert error.min() < 1e-4, "not a padded window of any source image"


def test_unknown_crop_padding():
    with pytest.raises(ValueError, match="Received: crop_padding='edge'"):
        data.cifar("cifar10", 8, crop_padding="edge")
