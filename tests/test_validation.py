"""The validation split (keras_normloss.data.validation) against NumPy: the same held-out images
for every run seed, disjoint from the images trained on, the test split untouched."""

import numpy as np
import pytest

from keras_normloss import data
from keras_normloss.data import sources, subset, validation


def test_split_is_numpys_seeded_permutation_and_partitions_the_training_split():
    train, held_out = validation.split_indices(1000, 0.1)
    order = np.random.default_rng(validation.VALIDATION_SEED).permutation(1000)
    np.testing.assert_array_equal(held_out, np.sort(order[:100]))
    np.testing.assert_array_equal(train, np.sort(order[100:]))
    assert not np.intersect1d(train, held_out).size
    np.testing.assert_array_equal(np.union1d(train, held_out), np.arange(1000))
    again = validation.split_indices(1000, 0.1)
    np.testing.assert_array_equal(again[1], held_out)  # deterministic


@pytest.mark.parametrize("size, count", [(0.1, 100), (0.25, 250), (37, 37), (0, 0)])
def test_size_is_a_fraction_or_a_count(size, count):
    assert len(validation.split_indices(1000, size)[1]) == count


@pytest.mark.parametrize("size", [-0.1, 1.5, 1000, 2000])
def test_bad_sizes_are_refused(size):
    with pytest.raises(ValueError):
        validation.split_indices(1000, size)


def _images(dataset):
    return np.concatenate([x.numpy() for x, _ in dataset])


def test_pipelines_hold_out_the_same_images_for_every_run_seed():
    arrays = sources.shipped("fashion_mnist_mini")
    _, held_out = validation.split_indices(len(arrays.train_labels), 0.1)
    loaded = [
        data.load("fashion_mnist_mini", 100, seed=seed, validation_split=0.1, augment="none")
        for seed in (0, 1)
    ]
    a, b = (_images(p.validation) for p in loaded)
    np.testing.assert_array_equal(a, b)
    info = loaded[0].info
    assert (info.train_examples, info.validation_examples, info.test_examples) == (
        3600,
        400,
        1000,
    )
    # The held-out images are those of the indices, normalised by the statistics of the
    # images trained on (held-out ones excluded).
    kept = np.setdiff1d(np.arange(4000), held_out)
    mean, std = data.pipelines.channel_stats(arrays.train_images[kept])
    expected = (arrays.train_images[held_out] / 255.0 - mean[0]) / std[0]
    np.testing.assert_allclose(a, expected, atol=1e-5)
    # One epoch of training (no augmentation) sees exactly the other images, once each.
    trained = _images(loaded[0].train().take(info.steps_per_epoch(100)))
    pixels = np.rint((trained * std[0] + mean[0]) * 255.0).astype(np.uint8)  # un-normalised

    def keys(images):
        return sorted(image.tobytes() for image in images)

    assert keys(pixels) == keys(arrays.train_images[kept])
    # The test split is untouched.
    np.testing.assert_allclose(
        _images(loaded[0].test), (arrays.test_images / 255.0 - mean[0]) / std[0], atol=1e-5
    )


def test_validation_split_of_synthetic_data_is_refused():
    with pytest.raises(data.DatasetOptionError, match="validation_split"):
        data.load("synthetic", 8, validation_split=0.1)


def test_a_train_subset_is_the_same_images_for_every_seed_and_leaves_validation_and_test():
    """`train_subset=`: a seeded permutation of the images left after the validation split,
    normalised by its own statistics; the validation and test images are those without it."""
    arrays = sources.shipped("fashion_mnist_mini")
    left, held_out = validation.split_indices(4000, 0.1)
    chosen = left[np.sort(np.random.default_rng(subset.SUBSET_SEED).permutation(3600)[:500])]
    np.testing.assert_array_equal(
        left[subset.subset_indices(3600, 500)], chosen
    )  # the oracle: NumPy's permutation of the images left
    loaded = [
        data.load(
            "fashion_mnist_mini", 100, seed=seed, validation_split=0.1, train_subset=500,
            augment="none",
        )
        for seed in (0, 1)
    ]  # fmt: skip
    info = loaded[0].info
    assert (info.train_examples, info.validation_examples, info.test_examples) == (500, 400, 1000)
    mean, std = data.pipelines.channel_stats(arrays.train_images[chosen])
    trained = _images(loaded[1].train().take(5))  # one epoch: 5 batches of 100
    pixels = np.rint((trained * std[0] + mean[0]) * 255.0).astype(np.uint8)
    assert sorted(i.tobytes() for i in pixels) == sorted(
        i.tobytes() for i in arrays.train_images[chosen]
    )
    expected = (arrays.train_images[held_out] / 255.0 - mean[0]) / std[0]
    np.testing.assert_allclose(_images(loaded[0].validation), expected, atol=1e-5)
    np.testing.assert_array_equal(_images(loaded[0].test).shape, (1000, 28, 28, 1))


@pytest.mark.parametrize("size", [0, 3601, 2.5])
def test_bad_subsets_are_refused(size):
    with pytest.raises(ValueError):
        subset.subset_indices(3600, size)
    with pytest.raises(data.DatasetOptionError, match="train_subset"):
        data.load("synthetic", 8, train_subset=10)
