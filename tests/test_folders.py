"""Image folders read without TensorFlow (keras_normloss.data.folders, Pillow) against Keras's
own reader (tf_sources, keras.utils.image_dataset_from_directory) and a NumPy oracle: the same
files, labels, splits and pixels."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_normloss import data
from keras_normloss.data import folders, tf_sources


def _folder(root, per_class=6, seed=0):
    """Images of random sizes (some smaller than the side asked for, some larger, most not
    square), smooth so that resizing matters, in RGB, RGBA, grey and palette modes."""
    rng = np.random.default_rng(seed)
    modes = ["RGB", "RGBA", "L", "P"]
    for c in ("b_class", "a_class"):
        os.makedirs(os.path.join(root, c))
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(9, 70, size=2))
            coarse = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, 4)).astype(np.uint8)
            pixels = Image.fromarray(coarse, "RGBA").resize((w, h), Image.BILINEAR)
            mode = modes[i % len(modes)]
            image = pixels.convert(mode) if mode != "P" else pixels.convert("RGB").quantize(64)
            extension = "gif" if mode == "P" else "png"
            image.save(os.path.join(root, c, f"{i:02d}.{extension}"))


@pytest.mark.parametrize("size", [16, 27])
def test_pillow_reader_equals_keras_reader_to_one_grey_level(tmp_path, size):
    _folder(str(tmp_path))
    keras_arrays = tf_sources.image_folder(str(tmp_path), size)
    pillow_arrays = folders.image_folder(str(tmp_path), size)
    for split in ("train", "test"):
        np.testing.assert_array_equal(
            getattr(pillow_arrays, f"{split}_labels"), getattr(keras_arrays, f"{split}_labels")
        )
        a = getattr(keras_arrays, f"{split}_images").astype(int)
        b = getattr(pillow_arrays, f"{split}_images").astype(int)
        assert a.shape == b.shape == (len(a), size, size, 3)
        assert np.abs(a - b).max() <= 1 and (a == b).mean() > 0.97  # rounding ties only
    assert pillow_arrays.source == keras_arrays.source


def test_area_weights_average_boxes():
    """Halving averages pixel pairs; 3 to 2 gives (1, 1/2) and (1/2, 1) over 3/2."""
    np.testing.assert_allclose(folders.area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(folders.area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(folders.area_weights(2, 4).sum(1), 1.0)  # upscaling: copies
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    # A centred 4x4 crop of the 4x6 image, then 2x2 blocks averaged and rounded.
    crop = image[:, 1:5].astype(float)
    blocks = crop.reshape(2, 2, 2, 2, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(folders.crop_and_resize(image, 2), np.round(blocks))


def test_folder_on_jax_backend(tmp_path):
    _folder(str(tmp_path / "train"), per_class=4)
    _folder(str(tmp_path / "val"), per_class=2, seed=1)
    p = data.load("folder", 4, data_dir=str(tmp_path), image_size=12, backend="jax")
    assert (p.info.train_examples, p.info.test_examples, p.info.num_classes) == (8, 4, 2)
    images, labels = next(p.train())
    assert images.shape == (4, 12, 12, 3) and labels.dtype == np.int32
    assert "train/ and val/" in p.info.source


def test_folder_errors_on_jax_backend(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError, match="needs --data-dir"):
        data.load("folder", 4, backend="jax")
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(data.MalformedDatasetError, match="No images found"):
        data.load("folder", 4, data_dir=str(empty), backend="jax")
    _folder(str(tmp_path / "damaged"), per_class=3)
    (tmp_path / "damaged" / "a_class" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(data.MalformedDatasetError, match="cannot decode"):
        data.load("folder", 4, data_dir=str(tmp_path / "damaged"), image_size=8, backend="jax")


@pytest.mark.parametrize("reader", ["keras", "pillow"])
def test_a_damaged_file_is_named_and_an_empty_class_folder_refused(tmp_path, reader):
    """On TensorFlow the error once named the folder and an internal blob of TensorFlow's
    graph, not the file; an empty class folder silently became a fourth output."""
    read = tf_sources.image_folder if reader == "keras" else folders.image_folder
    _folder(str(tmp_path / "damaged"))
    bad = tmp_path / "damaged" / "a_class" / "03.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(data.MalformedDatasetError, match="03.png: cannot decode") as error:
        read(str(tmp_path / "damaged"), 16)
    assert str(error.value).count("\n") == 0
    _folder(str(tmp_path / "empty"))
    os.makedirs(tmp_path / "empty" / "c_class")
    with pytest.raises(data.MalformedDatasetError, match="'c_class' holds no training image"):
        read(str(tmp_path / "empty"), 16)
