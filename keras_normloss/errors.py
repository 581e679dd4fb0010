"""Every exception a user of keras-normloss may catch, in one place (no Keras: the command line
imports it before it knows whether it will train).

The library raises `UnsupportedLayerError` and the dataset errors; the application (the command
line, training, plotting) raises `UsageError` for bad input, reported in one line with exit
status 2. How a run stops (`training.faults.RunStopped`, a sweep's `RunError`) is the training
engine's own business and lives beside it.
"""


class UsageError(ValueError):
    """Bad input from the user: reported in one line, exit status 2."""


class UnsupportedLayerError(ValueError):
    """Raised when keras-normloss cannot tell a layer's output channels."""


class DatasetNotPreparedError(RuntimeError):
    """The dataset is not where it was looked for, and downloading is off."""


class MalformedDatasetError(RuntimeError):
    """Files were found where the dataset should be, but they are not that dataset."""


class DatasetOptionError(ValueError):
    """An option the dataset cannot take (`image_size` for CIFAR, `augment` for ImageNet)."""


class DatasetBackendError(DatasetOptionError):
    """A dataset the chosen Keras backend's pipelines cannot load (ImageNet on JAX)."""
