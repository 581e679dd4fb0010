"""The configuration of a run: `RunConfig`, and `make_config` that builds and validates it.

Every setting a run is defined by is a field of `RunConfig`; `config.json` in the run directory is
`dataclasses.asdict(config)`. Fields in `OPERATIONAL` change how a run is carried out but not what
it computes, so a run may be resumed with other values of them (another data directory, machine
or strategy). The Keras backend is not one of them: its input pipelines and random generators
are its own, so a run started on TensorFlow is resumed on TensorFlow and one started on JAX on
JAX.
"""

import dataclasses
import os

# No Keras or TensorFlow here (5-8 s to import): the command line reads these names to parse
# its options, and `--help` or a mistyped option answer at once. `make_config` imports the
# dataset and model registries when it runs.
from keras_normloss import cli, errors, methods
from keras_normloss.choices import (
    JIT_COMPILE,
    LR_SCHEDULES,
    MIXED_PRECISION,
    OPTIMIZERS,
    upgrade_record,
)
from keras_normloss.methods.table import PARAMETERS
from keras_normloss.training import presets

WEIGHT_DECAY_ON = PARAMETERS  # "kernels", "all"
STRATEGIES = ("auto", "mirrored", "multiworker", "tpu", "one-device")  # see `strategies`
# The initial learning rate of the adaptive optimizers when --lr is not given (at the preset's
# batch size): Adam's usual 1e-3; the presets' 0.1 is SGD's.
ADAPTIVE_LR = 1e-3
DEFAULT_KEEP_CHECKPOINTS = 2

# Settings that do not change what a run computes; a run may be resumed with other values.
# XLA (`jit_compile`) fuses operations and so changes the last bits of the results, as another
# strategy or device does: it is operational like them. Mixed precision changes the numbers
# themselves: it is part of the run's identity.
OPERATIONAL = (
    "output",
    "data_dir",
    "download",
    "strategy",
    "checkpoint_every",
    "keep_checkpoints",
    "jit_compile",
    "dynamics_every",
)
# What `config.json` holds beside the fields: derived from them, so not part of a run's identity.
DERIVED = ("timescale",)


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a run. Built by `make_config` from a preset."""

    preset: str
    dataset: str
    model: str
    method: str  # `regularizer` in the config.json of runs made before the rename
    factor: object  # float, or None for none/wrs
    epochs: int
    steps_per_epoch: object  # int or None: one pass over the training split
    batch_size: int
    lr: float
    lr_decay_epochs: list
    lr_decay: float
    momentum: float
    nesterov: bool
    dropout: float
    seed: int
    deterministic: bool
    synchronized_bn: bool
    output: str
    optimizer: str = "sgd"
    weight_decay_on: str = "all"
    crop_padding: str = "zeros"
    augment: object = None  # one of data.AUGMENTATIONS, or None: the dataset's default
    image_size: object = None  # int, or None: the dataset's own size (64 for varying sizes)
    mixed_precision: str = "off"
    strategy: str = "auto"
    data_dir: object = None
    download: bool = False
    checkpoint_every: object = None
    keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS
    jit_compile: str = "auto"
    # keras_normloss.schedules: "step" (lr_decay at lr_decay_epochs), "linear" or "cosine" to 0.
    lr_schedule: str = "step"
    # The Keras backend the run trains on ("tensorflow" or "jax"): Keras's, when the run is made.
    # Runs made before the field existed trained on TensorFlow.
    backend: str = "tensorflow"
    warmup_epochs: float = 0.0  # linear warmup from 0 to lr; may be a fraction of an epoch
    # Training images held out for validation: a fraction (< 1) or a count (>= 1); 0: none.
    # The same images for every seed (keras_normloss.data.validation).
    validation_split: float = 0.0
    # NormDynamics's sampling interval in steps (dynamics.csv): None its default, 0 off.
    dynamics_every: object = None
    # Training batches over which BatchNormalization's statistics are recomputed before each
    # evaluation (keras_normloss.batch_norm.PreciseBatchNorm); 0: Keras's moving averages.
    precise_bn: int = 0
    # How many of the training images left after the validation split to train on (the same
    # ones for every seed: keras_normloss.data.subset); None: all of them.
    train_subset: object = None

    def identity(self):
        """The fields that must match for a directory to be this run. For `--dataset folder`
        the data directory is the dataset, so it is one of them."""
        operational = set(OPERATIONAL) - ({"data_dir"} if self.dataset == "folder" else set())
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in operational}


# The names of fields renamed since runs were first written: `choices.RENAMED`.


def make_config(preset_name, output, **overrides):
    """Builds a `RunConfig` from a preset and explicit overrides.

    Args:
        preset_name: a name from `keras_normloss.training.presets.PRESETS`.
        output: the run directory.
        **overrides: any `RunConfig` field; `None` values are ignored. An
            unset `factor` becomes the preset's default for the method;
            `lr` is scaled with the global batch for presets that say so.

    Raises:
        keras_normloss.errors.UsageError: for an unknown preset, dataset, model,
            regularizer, strategy, precision or XLA setting, a factor given to
            `none`/`wrs`, a `data_dir` that does not exist, or a `backend` other than the
            one Keras runs on in this process.

    Returns:
        A `RunConfig`.

    Example:

    ```python
    config = make_config("cifar10-resnet110", "runs/r110", method="weight-decay")
    config.factor  # 1e-4: the paper's weight decay
    ```
    """
    backend = _keras_backend(asked=overrides.pop("backend", None))
    try:
        preset = presets.get(preset_name)
    except ValueError as error:
        raise errors.UsageError(str(error)) from None
    overrides = {k: v for k, v in upgrade_record(overrides).items() if v is not None}
    method, factor, optimizer = _method_factor_optimizer(overrides, backend)
    overrides.setdefault("augment", preset.augment)
    batch_size = overrides.pop("batch_size", preset.batch_size)
    lr, factor = _learning_rate_and_factor(
        preset, method, optimizer, batch_size, overrides.pop("lr", None), factor
    )
    config = RunConfig(
        preset=preset.name,
        dataset=overrides.pop("dataset", preset.dataset),
        model=overrides.pop("model", preset.model),
        method=method,
        factor=factor,
        optimizer=optimizer,
        epochs=overrides.pop("epochs", preset.epochs),
        steps_per_epoch=overrides.pop("steps_per_epoch", None),
        batch_size=batch_size,
        lr=lr,
        lr_decay_epochs=list(overrides.pop("lr_decay_epochs", preset.lr_decay_epochs)),
        lr_decay=preset.lr_decay,
        momentum=overrides.pop("momentum", preset.momentum),
        nesterov=preset.nesterov,
        dropout=overrides.pop("dropout", preset.dropout),
        weight_decay_on=overrides.pop("weight_decay_on", preset.weight_decay_on),
        crop_padding=overrides.pop("crop_padding", preset.crop_padding),
        lr_schedule=overrides.pop("lr_schedule", preset.lr_schedule),
        warmup_epochs=float(overrides.pop("warmup_epochs", preset.warmup_epochs)),
        validation_split=overrides.pop("validation_split", preset.validation_split),
        precise_bn=overrides.pop("precise_bn", preset.precise_bn),
        seed=overrides.pop("seed", 0),
        deterministic=overrides.pop("deterministic", False),
        synchronized_bn=overrides.pop("synchronized_bn", False),
        output=os.fspath(output),
        backend=backend,
        **overrides,
    )
    _check(config)
    return config


def _method_factor_optimizer(overrides, backend):
    """Takes `method`, `factor` and `optimizer` out of `overrides`, each checked (and
    `--synchronized-bn` against the backend)."""
    method = overrides.pop("method", "normloss")
    if method not in methods.METHODS:
        raise errors.UsageError(
            f"unknown method {method!r}; expected one of {', '.join(methods.names())}"
        )
    factor = overrides.pop("factor", None)
    if factor is not None and not methods.get(method).takes_factor:
        raise errors.UsageError(f"--factor does not apply to --method {method}")
    if overrides.get("synchronized_bn") and backend != "tensorflow":
        # Keras's BatchNormalization(synchronized=True) is TensorFlow's; on JAX, DataParallel's
        # BatchNorm statistics are reductions over the global batch already.
        raise errors.UsageError(
            f"--synchronized-bn is for TensorFlow's MirroredStrategy; on {backend} BatchNorm "
            "statistics are over the global batch already: leave it out"
        )
    optimizer = overrides.pop("optimizer", "sgd")
    if optimizer not in OPTIMIZERS:
        raise errors.UsageError(
            f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}"
        )
    return method, factor, optimizer


def _keras_backend(asked):
    """The backend Keras runs on in this process, refused if another was `asked` for or if
    keras-normloss cannot train on it."""
    import keras

    backend = keras.backend.backend()
    if asked is not None and asked != backend:
        raise errors.UsageError(
            f"backend {asked!r} was asked for, and Keras runs on {backend} in this process "
            f"(its backend is fixed when Keras is first imported): set KERAS_BACKEND={asked} "
            "before importing Keras, or use `keras-normloss train --backend`"
        )
    if backend not in cli.BACKENDS:
        raise errors.UsageError(
            f"Keras runs on {backend}; keras-normloss trains on tensorflow or jax "
            "(set KERAS_BACKEND)"
        )
    return backend


def _learning_rate_and_factor(preset, method, optimizer, batch_size, lr, factor):
    """The run's initial learning rate (the preset's for SGD, Adam's 1e-3 otherwise, scaled
    with the batch where the preset says so) and its factor (the preset's default for the
    method when none is given), each checked."""
    if lr is not None and not lr > 0:
        raise errors.UsageError(f"--lr must be positive (a learning rate of {lr:g} trains nothing)")
    scaled = batch_size / preset.batch_size if preset.lr_scales_with_batch else 1.0
    if lr is None:
        lr = (preset.lr if optimizer == "sgd" else ADAPTIVE_LR) * scaled
    if factor is None:
        # The preset's learning rate, scaled with the batch as above: the decoupled
        # defaults convert for the optimizer's lr, not for a batch-size change.
        factor = presets.default_factor(preset, method, lr=lr / scaled)
    if factor is not None and not 0 <= factor < float("inf"):
        raise errors.UsageError(f"--factor must be a non-negative number, got {factor}")
    return lr, factor


def _check(config):
    """Refuses a `RunConfig` with a setting no run can have (names, ranges, paths); writes its
    `data_dir` as a string."""
    from keras_normloss import data, models

    try:
        data.check_name(config.dataset)
    except ValueError as error:
        raise errors.UsageError(str(error)) from None
    if config.augment is not None:
        _check_choice("--augment", config.augment, data.AUGMENTATIONS)
    if config.image_size is not None and not (
        isinstance(config.image_size, int) and config.image_size >= 8
    ):
        raise errors.UsageError(f"--image-size must be an integer >= 8, got {config.image_size}")
    _check_choice("--lr-schedule", config.lr_schedule, LR_SCHEDULES)
    if not 0 <= config.warmup_epochs < config.epochs:
        raise errors.UsageError(
            f"--warmup-epochs must be >= 0 and less than --epochs ({config.epochs}), "
            f"got {config.warmup_epochs:g}"
        )
    if config.lr_schedule == "step" and any(
        config.warmup_epochs > e for e in config.lr_decay_epochs
    ):
        raise errors.UsageError(
            f"--warmup-epochs {config.warmup_epochs:g} reaches the step schedule's first decay "
            f"(epoch {min(config.lr_decay_epochs)})"
        )
    try:
        data.validation.check_size(config.validation_split)
    except ValueError as error:
        raise errors.UsageError(f"--validation-split: {error}") from None
    _check_choice("model", config.model, models.names())
    _check_choice("crop padding", config.crop_padding, data.CROP_PADDINGS)
    _check_choice("--weight-decay-on", config.weight_decay_on, WEIGHT_DECAY_ON)
    _check_choice("strategy", config.strategy, STRATEGIES)
    _check_choice("--mixed-precision", config.mixed_precision, MIXED_PRECISION)
    _check_choice("--jit-compile", config.jit_compile, JIT_COMPILE)
    if not 0 <= config.momentum < 1:
        raise errors.UsageError(f"--momentum must be at least 0 and below 1, got {config.momentum:g}")
    if config.dynamics_every is not None and not (
        isinstance(config.dynamics_every, int) and config.dynamics_every >= 0
    ):
        raise errors.UsageError(
            f"--dynamics-every must be a non-negative integer, got {config.dynamics_every}"
        )
    if config.train_subset is not None and not (
        isinstance(config.train_subset, int) and config.train_subset >= 1
    ):
        raise errors.UsageError(f"--train-subset must be a positive integer, got {config.train_subset}")
    if isinstance(config.precise_bn, bool) or not (
        isinstance(config.precise_bn, int) and config.precise_bn >= 0
    ):
        raise errors.UsageError(f"--precise-bn must be an integer >= 0, got {config.precise_bn}")
    if not (isinstance(config.keep_checkpoints, int) and config.keep_checkpoints >= 1):
        raise errors.UsageError(
            f"--keep-checkpoints must be a positive integer, got {config.keep_checkpoints}"
        )
    if config.data_dir is not None:
        config.data_dir = os.fspath(config.data_dir)
        # Only existence: for some datasets it is a tfds directory, for others a folder of
        # image or IDX files, which the data layer checks itself.
        if not os.path.exists(config.data_dir):
            raise errors.UsageError(f"--data-dir {config.data_dir} does not exist")
        if not os.path.isdir(config.data_dir):
            raise errors.UsageError(
                f"--data-dir {config.data_dir} is a file; give the directory that holds the "
                "dataset's files"
            )


def _check_choice(what, value, choices):
    if value not in choices:
        raise errors.UsageError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")
