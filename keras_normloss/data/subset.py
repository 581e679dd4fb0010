"""A fixed subset of the training images (`train_subset=`, `--train-subset N`): the same images
for every run and seed of a dataset, for data-efficiency work and for regimes where a small
network can overfit.

The subset is drawn after the validation split (`validation`) from the images left to train on,
by a permutation seeded with `SUBSET_SEED`, a constant independent of a run's seed, so that
every method, factor and seed of a comparison trains on the same images. The validation and test
images are untouched: a run on 5,000 images is still evaluated on the full test split.
Normalisation statistics are those of the subset (the images trained on).
"""

import numpy as np

# Any fixed number: not a run's seed (and not the validation split's), so that every seed
# trains on the same images.
SUBSET_SEED = 27_2026


def subset_indices(num_train, size, seed=SUBSET_SEED):
    """The indices of the `size` training images kept, in ascending order.

    Args:
        num_train: the number of images left to train on (after any validation split).
        size: how many to keep, a whole number from 1 to `num_train`.
        seed: the permutation's seed; leave the default so that every run shares the subset.

    Returns:
        An int64 array: the first `size` of `np.random.default_rng(seed).permutation(num_train)`,
        sorted.

    Raises:
        ValueError: for a size that is not a whole number from 1 to `num_train`.

    Example:

    ```python
    len(subset_indices(54_000, 5_000))  # 5000
    ```
    """
    if not (isinstance(size, (int, np.integer)) or float(size).is_integer()) or size < 1:
        raise ValueError(f"expected a whole number of images >= 1. Received: {size!r}")
    size = int(size)
    if size > num_train:
        raise ValueError(
            f"a subset of {size:,} images was asked for, and {num_train:,} are left to train on"
        )
    return np.sort(np.random.default_rng(seed).permutation(num_train)[:size])


class Subset:
    """Arrays whose training split is cut to `subset_indices(..., size)`; every other attribute
    (test, validation, classes, source) is the original's."""

    def __init__(self, arrays, size, seed=SUBSET_SEED):
        kept = subset_indices(len(arrays.train_labels), size, seed)
        self._arrays = arrays
        self.train_images = arrays.train_images[kept]
        self.train_labels = arrays.train_labels[kept]

    def __getattr__(self, name):
        return getattr(self._arrays, name)
