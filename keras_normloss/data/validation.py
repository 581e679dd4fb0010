"""The validation split: training images held out, the same ones for every run of a dataset.

The split is a permutation of the training split seeded by `VALIDATION_SEED`, a constant
independent of a run's seed: every run of a comparison (every method, factor and seed) trains
on the same images and is validated on the same held-out ones, which it never trains on. The
test split is untouched, so validation and test images are disjoint as the dataset's own
splits are. Factors are chosen on the validation error; the test error is reported.
"""

import numpy as np

# Any fixed number: not a run's seed, so that the split is shared by all seeds.
VALIDATION_SEED = 16_2020


def check_size(size):
    """Raises ValueError unless `size` is 0 (none), a fraction in (0, 1) or a whole count >= 1.

    Example:

    ```python
    check_size(0.1)   # 10 % of the training images
    check_size(5000)  # 5,000 of them
    ```
    """
    if not (size == 0 or 0 < size < 1 or (size >= 1 and float(size).is_integer())):
        raise ValueError(
            "expected 0 (none), a fraction in (0, 1) or a whole number of images. "
            f"Received: {size!r}"
        )


def validation_count(size, num_train):
    """The number of images a `size` (fraction or count) holds out of `num_train`.

    Raises:
        ValueError: if it is not `check_size`-valid, or leaves no training image.
    """
    check_size(size)
    count = int(round(size * num_train)) if size < 1 else int(size)
    if size and count < 1:
        count = 1
    if count >= num_train:
        raise ValueError(
            f"a validation split of {size:g} holds out {count} of {num_train} training images, "
            "leaving none to train on"
        )
    return count


def split_indices(num_train, size, seed=VALIDATION_SEED):
    """The indices of the training and validation images, each in ascending order.

    Args:
        num_train: the size of the dataset's training split.
        size: a fraction in (0, 1), a count >= 1, or 0 for no validation split.
        seed: the permutation's seed; leave the default so that every run shares the split.

    Returns:
        `(train_indices, validation_indices)`: disjoint int64 arrays whose union is
        `range(num_train)`; the validation ones are the first `validation_count(size,
        num_train)` of `np.random.default_rng(seed).permutation(num_train)`.

    Raises:
        ValueError: for a bad `size`, or one that leaves nothing to train on.

    Example:

    ```python
    train, held_out = split_indices(60_000, 0.1)
    len(held_out)  # 6000
    ```
    """
    count = validation_count(size, num_train)
    order = np.random.default_rng(seed).permutation(num_train)
    return np.sort(order[count:]), np.sort(order[:count])


class Split:
    """Arrays with the validation images moved out of the training split.

    Attributes:
        train_images, train_labels: the images trained on.
        validation_images, validation_labels: the held-out images.
        test_images, test_labels, num_classes, source: as the original arrays.
    """

    def __init__(self, arrays, size, seed=VALIDATION_SEED):
        train, held_out = split_indices(len(arrays.train_labels), size, seed)
        self.train_images = arrays.train_images[train]
        self.train_labels = arrays.train_labels[train]
        self.validation_images = arrays.train_images[held_out]
        self.validation_labels = arrays.train_labels[held_out]
        self.test_images = arrays.test_images
        self.test_labels = arrays.test_labels
        self.num_classes = arrays.num_classes
        self.source = arrays.source
