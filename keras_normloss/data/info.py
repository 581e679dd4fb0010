"""What a loaded dataset is, whichever backend's pipelines made it: `DataInfo` and `Pipelines`.

Both the tf.data pipelines (`pipelines`) and the NumPy ones (`numpy_pipelines`) return these
types, so the training code reads a dataset the same way on every backend. No TensorFlow.
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the training code needs to know about a dataset.

    Attributes:
        name: the dataset's name.
        num_classes: the number of labels.
        image_shape: the model's input shape.
        train_examples, test_examples: split sizes (counted where tfds does
            not know them, e.g. under `tfds.testing.mock_data`).
        synthetic: True for generated data that means nothing.
        source: where the data was read from, for the user.
        validation_examples: images held out of the training split for validation (0:
            none); `train_examples` excludes them.

    Example:

    ```python
    info = DataInfo("fashion_mnist_mini", 10, (28, 28, 1), 4000, 1000)
    info.steps_per_epoch(128)  # 31
    ```
    """

    name: str
    num_classes: int
    image_shape: tuple
    train_examples: int
    test_examples: int
    synthetic: bool = False
    source: str = ""
    validation_examples: int = 0

    def steps_per_epoch(self, global_batch_size):
        """Full batches per training epoch (the last partial one is dropped)."""
        return max(1, self.train_examples // global_batch_size)

    def test_steps(self, global_batch_size):
        """Batches of the test split, the last one maybe partial."""
        return math.ceil(self.test_examples / global_batch_size)

    def validation_steps(self, global_batch_size):
        """Batches of the validation split, the last one maybe partial."""
        return math.ceil(self.validation_examples / global_batch_size)


@dataclasses.dataclass(frozen=True)
class Pipelines:
    """The datasets for one run.

    Attributes:
        train: a function `(first_epoch=0, skip_steps=0)` returning the training batches from
            epoch `first_epoch`, step `skip_steps` on, endlessly (`fit` is given
            `steps_per_epoch`): a `tf.data.Dataset` on TensorFlow, a Python iterator of NumPy
            `(images, labels)` batches on the other backends.
        test: the test batches, in a fixed order: a `tf.data.Dataset`, or a
            `keras.utils.PyDataset`.
        info: a `DataInfo`.
        validation: the batches of the images held out of the training split (normalised as
            the test images, not augmented), of the same type as `test`; or None.
    """

    train: object
    test: object
    info: DataInfo
    validation: object = None
