"""One training run: config -> strategy -> data -> model -> fit -> outputs.

    keras-normloss train --preset quick --dataset synthetic --output runs/quick

A run directory holds:

    config.json        everything needed to run it again (`--config` is not
                       needed: the same command resumes it)
    metrics.csv        one row per epoch (see METRIC_COLUMNS)
    tensorboard/       Keras's scalars, and per-kernel channel norms (NormMonitor)
    checkpoint/        the latest weights + optimizer state, and state.json
                       (with the dropout generators' state; removed when the
                       run is finished)
    model.keras        the final model
    results.json       the final test error (the one to report), the best
                       epoch's (picked on the test set: optimistic), wall
                       time, versions, device

A run killed at any moment and started again with the same command
continues from its last checkpoint (every epoch, and every
`--checkpoint-every` steps). The data of epoch e, step k is a function of
(seed, e, k) alone, so a resumed run sees the batches an uninterrupted run
would have seen; with `--deterministic` its final weights are the same.
"""

import csv
import dataclasses
import glob
import json
import os
import platform
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_normloss
from keras_normloss import callbacks as norm_callbacks
from keras_normloss import cli, data, methods, models, presets
from keras_normloss.attach import PARAMETERS
from keras_normloss.optimizers import extend_with_normloss

METRIC_COLUMNS = (
    "epoch",
    "loss",
    "cross_entropy",
    "regularization_loss",
    "accuracy",
    "error",
    "test_loss",
    "test_cross_entropy",
    "test_accuracy",
    "test_error",
    "learning_rate",
    "norm_mean",
    "norm_std",
    "norm_min",
    "norm_max",
    "oblique_distance",
    "epoch_seconds",
    "dataset",
)
STRATEGIES = ("auto", "mirrored", "multiworker", "tpu", "one-device")
WEIGHT_DECAY_ON = PARAMETERS  # "kernels", "all"
OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
}
# The initial learning rate of the adaptive optimizers when --lr is not given (at the preset's
# batch size): Adam's usual 1e-3; the presets' 0.1 is SGD's.
ADAPTIVE_LR = 1e-3

# Settings that do not change what a run computes; a run may be resumed with
# other values (another data directory, another machine).
_OPERATIONAL = ("output", "data_dir", "download", "strategy", "checkpoint_every")


@dataclasses.dataclass
class RunConfig:
    """Everything that defines a run. Built by `make_config` from a preset."""

    preset: str
    dataset: str
    model: str
    regularizer: str
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
    strategy: str = "auto"
    data_dir: object = None
    download: bool = False
    checkpoint_every: object = None

    def identity(self):
        """The fields that must match for a directory to be this run."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _OPERATIONAL}


def make_config(preset_name, output, **overrides):
    """Builds a `RunConfig` from a preset and explicit overrides.

    Args:
        preset_name: a name from `keras_normloss.presets.PRESETS`.
        output: the run directory.
        **overrides: any `RunConfig` field; `None` values are ignored. An
            unset `factor` becomes the preset's default for the regularizer;
            `lr` is scaled with the global batch for presets that say so.

    Raises:
        keras_normloss.cli.UsageError: for an unknown preset, dataset, model,
            regularizer or strategy, or a factor given to `none`/`wrs`.

    Returns:
        A `RunConfig`.

    Example:

    ```python
    config = make_config("cifar10-resnet110", "runs/r110", regularizer="weight-decay")
    config.factor  # 1e-4: the paper's weight decay
    ```
    """
    try:
        preset = presets.get(preset_name)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    method = overrides.pop("method", None) or overrides.pop("regularizer", "normloss")
    overrides.pop("regularizer", None)
    if method not in methods.METHODS:
        raise cli.UsageError(
            f"unknown method {method!r}; expected one of {', '.join(methods.names())}"
        )
    factor = overrides.pop("factor", None)
    if factor is not None and not methods.get(method).takes_factor:
        raise cli.UsageError(f"--factor does not apply to --method {method}")
    if factor is None:
        factor = presets.default_factor(preset, method)
    if factor is not None and not 0 <= factor < float("inf"):
        raise cli.UsageError(f"--factor must be a non-negative number, got {factor}")
    optimizer = overrides.pop("optimizer", "sgd")
    if optimizer not in OPTIMIZERS:
        raise cli.UsageError(
            f"unknown optimizer {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}"
        )
    batch_size = overrides.pop("batch_size", preset.batch_size)
    lr = overrides.pop("lr", None)
    if lr is None:
        lr = preset.lr if optimizer == "sgd" else ADAPTIVE_LR
        lr *= batch_size / preset.batch_size if preset.lr_scales_with_batch else 1.0
    config = RunConfig(
        preset=preset.name,
        dataset=overrides.pop("dataset", preset.dataset),
        model=overrides.pop("model", preset.model),
        regularizer=method,
        factor=factor,
        optimizer=optimizer,
        epochs=overrides.pop("epochs", preset.epochs),
        steps_per_epoch=overrides.pop("steps_per_epoch", None),
        batch_size=batch_size,
        lr=lr,
        lr_decay_epochs=list(overrides.pop("lr_decay_epochs", preset.lr_decay_epochs)),
        lr_decay=preset.lr_decay,
        momentum=preset.momentum,
        nesterov=preset.nesterov,
        dropout=overrides.pop("dropout", preset.dropout),
        weight_decay_on=overrides.pop("weight_decay_on", preset.weight_decay_on),
        crop_padding=overrides.pop("crop_padding", preset.crop_padding),
        seed=overrides.pop("seed", 0),
        deterministic=overrides.pop("deterministic", False),
        synchronized_bn=overrides.pop("synchronized_bn", False),
        output=os.fspath(output),
        **overrides,
    )
    try:
        data.check_name(config.dataset)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    if config.model not in models.names():
        raise cli.UsageError(
            f"unknown model {config.model!r}; expected one of {', '.join(models.names())}"
        )
    if config.crop_padding not in data.CROP_PADDINGS:
        raise cli.UsageError(
            f"unknown crop padding {config.crop_padding!r}; expected one of "
            f"{', '.join(data.CROP_PADDINGS)}"
        )
    if config.weight_decay_on not in WEIGHT_DECAY_ON:
        raise cli.UsageError(
            f"unknown --weight-decay-on {config.weight_decay_on!r}; expected one of "
            f"{', '.join(WEIGHT_DECAY_ON)}"
        )
    if config.strategy not in STRATEGIES:
        raise cli.UsageError(
            f"unknown strategy {config.strategy!r}; expected one of {', '.join(STRATEGIES)}"
        )
    return config


def make_strategy(name):
    """The `tf.distribute` strategy for `--strategy NAME`.

    `auto`: MirroredStrategy over all visible GPUs, else the CPU alone;
    `mirrored`: MirroredStrategy over all GPUs, else over all logical CPU
    devices (useful for testing); `multiworker`: MultiWorkerMirroredStrategy
    configured by `TF_CONFIG`; `tpu`: TPUStrategy; `one-device`: the first
    GPU, else the CPU.
    """
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(
            gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    if name == "auto" and gpus:
        return tf.distribute.MirroredStrategy(gpus)
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")


def is_chief(strategy):
    """True for the one process that writes outputs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def _write_json(path, payload):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path):
    with open(path) as f:
        return json.load(f)


class EpochExtras(keras.callbacks.Callback):
    """Adds learning rate, penalty, errors and epoch time to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._lr = float(np.asarray(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        losses = self.model.losses
        logs["regularization_loss"] = float(sum(float(np.asarray(l)) for l in losses))
        logs["learning_rate"] = self._lr
        if "accuracy" in logs:
            logs["error"] = 1.0 - float(logs["accuracy"])
        if "val_accuracy" in logs:
            logs["val_error"] = 1.0 - float(logs["val_accuracy"])
        logs["epoch_seconds"] = time.perf_counter() - self._start


class MetricsCSV(keras.callbacks.Callback):
    """metrics.csv: fixed columns, one fsynced row per epoch, 1-based."""

    def __init__(self, path, dataset, first_epoch):
        super().__init__()
        self.path = path
        self.dataset = dataset
        _truncate_metrics(path, first_epoch)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "dataset": self.dataset}
        for key, value in logs.items():
            column = "test_" + key[4:] if key.startswith("val_") else key
            if column in METRIC_COLUMNS:
                row[column] = f"{float(value):.6g}"
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def random_state_variables(model):
    """The state variables of the model's random number generators.

    Dropout (and Keras's random augmentation layers) draw from a
    `keras.random.SeedGenerator` whose state advances with every call.
    That state is a variable of the model, but `save_weights` does not
    store it (Keras 3.15), so a run resumed from weights alone draws other
    dropout masks than the uninterrupted run. The input pipeline needs no
    state: its randomness is a function of (seed, epoch, position).

    Returns:
        The state variables, in the order of the model's layers.
    """
    states = {}
    for layer in model._flatten_layers(include_self=True):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                states.setdefault(id(value.state), value.state)
    return list(states.values())


class Checkpointer(keras.callbacks.Callback):
    """Weights, optimizer and random state, atomically, every epoch and every
    N steps.

    The weights go to a file named after the position, then state.json
    (written atomically) points at it and holds the random generators'
    states (see `random_state_variables`); a kill at any moment leaves the
    previous complete checkpoint in force.
    """

    def __init__(self, directory, steps_per_epoch, every, write):
        super().__init__()
        self.directory = directory
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.write = write
        self.epoch = 0
        self.step_offset = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_offset + batch + 1
        global_step = self.epoch * self.steps_per_epoch + step
        if self.every and global_step % self.every == 0 and step < self.steps_per_epoch:
            self.save(self.epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset = 0
        self.save(epoch + 1, 0)

    def save(self, epoch, step):
        if not self.write:
            # Every worker must take part: reading some variables under
            # MultiWorkerMirroredStrategy is a collective operation.
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save_weights(os.path.join(scratch, "ckpt.weights.h5"))
            return
        os.makedirs(self.directory, exist_ok=True)
        name = f"ckpt-e{epoch:05d}-s{step:07d}.weights.h5"
        tmp = os.path.join(self.directory, f"tmp-{name}")
        self.model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.directory, name))
        _write_json(
            os.path.join(self.directory, "state.json"),
            {
                "epoch": epoch,
                "step": step,
                "weights": name,
                "random_state": [
                    np.asarray(v).tolist() for v in random_state_variables(self.model)
                ],
            },
        )
        for old in glob.glob(os.path.join(self.directory, "*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)


def _truncate_metrics(path, completed_epochs):
    """Keeps only rows of epochs <= completed_epochs (a resumed run redoes the rest)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= completed_epochs]
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_metrics(run_dir):
    """Returns metrics.csv of a run as a list of dicts of floats (dataset as str)."""
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        return [
            {
                k: (v if k == "dataset" else float(v) if v not in ("", None) else float("nan"))
                for k, v in row.items()
            }
            for row in csv.DictReader(f)
        ]


def _build_model(config, info, steps_per_epoch):
    kwargs = dict(
        num_classes=info.num_classes,
        input_shape=info.image_shape,
        synchronized_bn=config.synchronized_bn,
        seed=config.seed,
    )
    if config.model.startswith("wrn"):
        kwargs["dropout"] = config.dropout
    applied = methods.apply(
        models.get(config.model, **kwargs),
        config.regularizer,
        config.factor,
        weight_decay_on=config.weight_decay_on,
    )
    model = applied.model
    # PiecewiseConstantDecay keeps values[i] while step <= boundaries[i], and
    # the step index of a batch is the count of steps before it; so the
    # first batch of epoch e (0-based step e * spe) is decayed only if the
    # boundary is e * spe - 1. With e * spe the decay would come a step late.
    boundaries = [int(e * steps_per_epoch) - 1 for e in config.lr_decay_epochs]
    values = [config.lr * config.lr_decay**i for i in range(len(boundaries) + 1)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    model.compile(
        optimizer=_make_optimizer(config, schedule, applied.optimizer_options),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="cross_entropy"),
        ],
    )
    return model, applied.callbacks


def _make_optimizer(config, schedule, method_options):
    """SGD (the presets' momentum and Nesterov), Adam or AdamW; the optimizer-level
    methods (decoupled Norm Loss or weight decay) extend it. AdamW's own weight
    decay is the method's: 0 unless --method weight-decay-decoupled, so that
    `none` means no regularization whatever the optimizer."""
    base = OPTIMIZERS[config.optimizer]
    kwargs = dict(learning_rate=schedule)
    if config.optimizer == "sgd":
        kwargs.update(momentum=config.momentum, nesterov=config.nesterov)
    elif config.optimizer == "adamw":
        kwargs["weight_decay"] = 0.0
    if not method_options:
        return base(**kwargs)
    return extend_with_normloss(base)(**kwargs, **method_options)


def _device_report(strategy, requested):
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append(details.get("device_name", gpu.name))
    return {
        "strategy": requested,
        # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy
        "strategy_class": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "gpus": gpus,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }


def _versions():
    return {
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_datasets": tfds.__version__,
        "numpy": np.__version__,
        "keras_normloss": keras_normloss.__version__,
    }


def _run_ops_one_at_a_time():
    """Inter-op parallelism 1, for `--deterministic`.

    `enable_op_determinism` makes each op deterministic, but not the order in
    which independent ops run: with dropout and Norm Loss together, two runs
    of a WRN differed by 3e-8 after one step (2e-5 after four) until
    inter-op parallelism was 1 (measured on 2 CPU cores). It can only be set
    before TensorFlow starts its runtime; a process that started it already
    (a notebook, a test) keeps its setting, and is told.
    """
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        if tf.config.threading.get_inter_op_parallelism_threads() != 1:
            print(
                "NOTE: --deterministic could not set TensorFlow's inter-op parallelism to 1 "
                "(the runtime had started); results may differ in the last bits."
            )


def check_run_dir(config):
    """Returns the state of `config.output`: "new", "resume" or "finished".

    Raises:
        keras_normloss.cli.UsageError: if the directory holds another run.
    """
    path = os.path.join(config.output, "config.json")
    if not os.path.exists(path):
        if os.path.isdir(config.output) and os.listdir(config.output):
            raise cli.UsageError(
                f"{config.output} is not empty and holds no config.json; choose a new --output"
            )
        return "new"
    saved = _read_json(path)
    mine = json.loads(json.dumps(config.identity()))
    theirs = {k: v for k, v in saved.items() if k not in _OPERATIONAL}
    if theirs != mine:
        differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise cli.UsageError(
            f"{config.output} holds a different run (differs in: {', '.join(differing)}); "
            "choose a new --output or repeat that run's command"
        )
    return "finished" if os.path.exists(os.path.join(config.output, "results.json")) else "resume"


def _work_around_keras_multi_worker_fit(model):
    """Makes Keras 3's `fit` run under MultiWorkerMirroredStrategy.

    Keras 3 does not run `fit` under this strategy (seen with Keras 3.15 and
    TF 2.21; keras-team/keras#20585, tensorflow/tensorflow#72388), for two
    reasons, both worked around here:

    1. A model that remembers the strategy it was built in first averages
       one batch across workers eagerly (`_maybe_symbolic_build`), which
       this strategy cannot do. Forgetting it makes Keras build at trace
       time; `fit` then runs inside `strategy.scope()`, where Keras finds
       the strategy.
    2. Keras averages each step's scalar logs across workers with
       `strategy.reduce("MEAN", v, axis=0)`; a scalar has no axis 0. The
       patched reduction uses `axis=None` (average over replicas only), and
       leaves everything else to Keras.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    model._distribute_strategy = None
    original = tf_trainer.reduce_per_replica
    if getattr(original, "patched_by_keras_normloss", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return tree.map_structure(
                lambda v: (
                    strategy.reduce("MEAN", v, axis=None)
                    if tf_trainer._is_per_replica_instance(v)
                    else v
                ),
                values,
            )
        return original(values, strategy, reduction)

    reduce_per_replica.patched_by_keras_normloss = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def _fit(model, pipelines, config, first_epoch, skip_steps, steps_per_epoch, checkpointer, fit):
    if skip_steps and first_epoch < config.epochs:
        # The rest of an epoch interrupted mid-way, on its own.
        checkpointer.step_offset = skip_steps
        model.fit(
            pipelines.train(first_epoch, skip_steps),
            initial_epoch=first_epoch,
            epochs=first_epoch + 1,
            steps_per_epoch=steps_per_epoch - skip_steps,
            **fit,
        )
        first_epoch += 1
    if first_epoch < config.epochs:
        model.fit(
            pipelines.train(first_epoch),
            initial_epoch=first_epoch,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            **fit,
        )


def run(config, verbose="auto"):
    """Trains one run and writes its directory (see the module docstring).

    Resumes from the directory's checkpoint if there is one, and returns at
    once if the run is finished.

    Args:
        config: a `RunConfig` (see `make_config`).
        verbose: Keras's `fit` verbosity ("auto" shows a progress bar).

    Returns:
        The run's results (the content of results.json).

    Raises:
        keras_normloss.cli.UsageError: if the output directory holds
            another run.
        keras_normloss.data.DatasetNotPreparedError: if the dataset is not
            prepared and `config.download` is False.

    Example:

    ```python
    results = run(make_config("quick", "runs/quick", dataset="synthetic", epochs=1))
    results["final_test_error"]
    ```
    """
    state = check_run_dir(config)
    results_path = os.path.join(config.output, "results.json")
    if state == "finished":
        print(f"{config.output}: finished already; results.json is there.")
        return _read_json(results_path)

    if config.deterministic:
        _run_ops_one_at_a_time()
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it before any op
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise cli.UsageError(
            f"--batch-size {config.batch_size} does not split over {replicas} replicas"
        )
    chief = is_chief(strategy)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    pipelines = data.load(
        config.dataset,
        config.batch_size,
        seed=config.seed,
        steps_per_epoch=config.steps_per_epoch,
        data_dir=config.data_dir,
        download=config.download,
        crop_padding=config.crop_padding,
    )
    info = pipelines.info
    steps_per_epoch = config.steps_per_epoch or info.steps_per_epoch(config.batch_size)
    if info.synthetic:
        print(
            "NOTE: training on SYNTHETIC data (random templates plus noise); "
            "the numbers say nothing about a real dataset."
        )

    with strategy.scope():
        model, method_callbacks = _build_model(config, info, steps_per_epoch)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _work_around_keras_multi_worker_fit(model)

    checkpoint_dir = os.path.join(config.output, "checkpoint")
    first_epoch, skip_steps = 0, 0
    state_path = os.path.join(checkpoint_dir, "state.json")
    if state == "resume" and os.path.exists(state_path):
        saved = _read_json(state_path)
        with strategy.scope():
            # The weights file holds the optimizer's state (momentum,
            # iterations, hence the learning-rate schedule's position) too;
            # its variables must exist before it is read.
            model.optimizer.build(model.trainable_variables)
            model.load_weights(os.path.join(checkpoint_dir, saved["weights"]))
            states = random_state_variables(model)
            if len(states) != len(saved.get("random_state", [])):
                raise cli.UsageError(
                    f"{state_path} holds {len(saved.get('random_state', []))} random "
                    f"generator states, the model has {len(states)}; it was written by "
                    "another version of keras-normloss: start a new --output"
                )
            for variable, value in zip(states, saved["random_state"]):
                variable.assign(np.asarray(value, dtype=variable.dtype))
        first_epoch, skip_steps = saved["epoch"], saved["step"]
        print(f"{config.output}: resuming at epoch {first_epoch + 1}, step {skip_steps}.")
    if chief:
        os.makedirs(config.output, exist_ok=True)
        _write_json(os.path.join(config.output, "config.json"), dataclasses.asdict(config))

    checkpointer = Checkpointer(checkpoint_dir, steps_per_epoch, config.checkpoint_every, chief)
    callbacks = [
        norm_callbacks.NormMonitor(
            log_dir=os.path.join(config.output, "tensorboard") if chief else None
        ),
        *method_callbacks,  # before the logs and checkpoint: pbwn-epoch projects at epoch end
        EpochExtras(),
    ]
    if chief:
        callbacks += [
            MetricsCSV(os.path.join(config.output, "metrics.csv"), info.name, first_epoch),
            keras.callbacks.TensorBoard(os.path.join(config.output, "tensorboard")),
        ]
    callbacks.append(checkpointer)  # last: an epoch is logged before it counts as done

    test_steps = info.test_steps(config.batch_size)
    fit = dict(
        validation_data=pipelines.test,
        validation_steps=test_steps,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )  # data is shuffled already
    with strategy.scope():
        _fit(model, pipelines, config, first_epoch, skip_steps, steps_per_epoch, checkpointer, fit)

    if not chief:
        with tempfile.TemporaryDirectory() as scratch:  # see Checkpointer.save
            model.save(os.path.join(scratch, "model.keras"))
        return {}
    model.save(os.path.join(config.output, "model.keras"))
    rows = read_metrics(config.output)
    best = min(rows, key=lambda r: r["test_error"])
    results = {
        # The number to report: the test error after the last epoch. The best
        # epoch is chosen on the test set itself, so its error is optimistic.
        "report": "final_test_error",
        "final_test_error": rows[-1]["test_error"],
        "best_test_error": best["test_error"],
        "best_epoch": int(best["epoch"]),
        "final_test_cross_entropy": rows[-1]["test_cross_entropy"],
        "final_train_cross_entropy": rows[-1]["cross_entropy"],
        "final_oblique_distance": rows[-1]["oblique_distance"],
        "epochs": len(rows),
        "wall_seconds": sum(r["epoch_seconds"] for r in rows),
        "dataset": info.name,
        "synthetic_data": info.synthetic,
        "versions": _versions(),
        "device": _device_report(strategy, config.strategy),
        "notes": {
            "final_test_error": "the error to report: after the last epoch, chosen by nothing",
            "best_test_error": "the lowest test error of any epoch: picked on the test set, "
            "so optimistic; do not report it as a result",
            "test_loss": "metrics.csv's test_loss includes the regularization penalty; "
            "compare methods on test_cross_entropy or test_error",
        },
    }
    if info.synthetic:
        results["note"] = "SYNTHETIC data: these numbers say nothing about a real dataset."
    _write_json(results_path, results)
    for leftover in glob.glob(os.path.join(checkpoint_dir, "*")):
        os.remove(leftover)
    if os.path.isdir(checkpoint_dir):
        os.rmdir(checkpoint_dir)
    return results


# Options that train and sweep share: they become `make_config` overrides of
# the same name. (Flags are stored as None when absent, so that the preset's
# value stands.)
_SHARED_OPTIONS = (
    ("--dataset", dict(help="cifar10, cifar100, imagenet2012 or synthetic")),
    ("--model", dict(help="a registered model name (default: the preset's)")),
    ("--epochs", dict(type=cli.positive_int)),
    (
        "--steps-per-epoch",
        dict(
            type=cli.positive_int, help="cap on steps per epoch (default: one pass over the data)"
        ),
    ),
    ("--lr", dict(type=cli.non_negative_float, help="initial learning rate")),
    (
        "--deterministic",
        dict(
            action="store_const",
            const=True,
            help="deterministic TensorFlow ops (slower): bit-reproducible runs",
        ),
    ),
    (
        "--synchronized-bn",
        dict(
            action="store_const", const=True, help="BatchNormalization statistics over all replicas"
        ),
    ),
    (
        "--weight-decay-on",
        dict(
            choices=WEIGHT_DECAY_ON,
            help="with --regularizer weight-decay: every trainable parameter (the "
            "references' way; default of every preset) or the kernels only",
        ),
    ),
    (
        "--optimizer",
        dict(
            choices=tuple(OPTIMIZERS),
            help=f"sgd (the presets': momentum, Nesterov as the preset), adam or adamw "
            f"(initial lr {ADAPTIVE_LR} unless --lr); default sgd",
        ),
    ),
    ("--strategy", dict(default="auto", choices=STRATEGIES)),
    ("--data-dir", dict(help="tfds data directory (default: $TFDS_DATA_DIR)")),
    (
        "--download",
        dict(
            action="store_const", const=True, help="let tfds download and prepare a missing dataset"
        ),
    ),
)


def add_shared_arguments(parser):
    """Adds `--preset` and the options that `train` and `sweep` share."""
    parser.add_argument("--preset", required=True, choices=sorted(presets.PRESETS))
    for flag, kwargs in _SHARED_OPTIONS:
        parser.add_argument(flag, **kwargs)


def shared_overrides(args):
    """The `make_config` overrides given by the shared options of `args`."""
    return {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _ in _SHARED_OPTIONS
    }


def build_parser():
    parser = cli.ArgumentParser(
        prog="keras-normloss train",
        description="Train one run of a preset; the same command resumes it.",
    )
    add_shared_arguments(parser)
    parser.add_argument(
        "--method",
        "--regularizer",
        dest="method",
        default="normloss",
        choices=methods.names(),
        help="how weight norms are controlled (see keras_normloss.methods; "
        "--regularizer is the old name of this option)",
    )
    parser.add_argument(
        "--factor",
        type=cli.non_negative_float,
        help="lambda for normloss(-decoupled), wd for weight-decay(-decoupled) "
        "(default: the preset's)",
    )
    parser.add_argument("--batch-size", type=cli.positive_int, help="the global batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-every",
        type=cli.positive_int,
        metavar="STEPS",
        help="also checkpoint every STEPS steps (always at each epoch's end)",
    )
    parser.add_argument("--output", required=True, help="the run directory")
    return parser


@cli.command("train")
def main(argv=None):
    """`keras-normloss train`. Returns 0, or exits with status 2 on bad input."""
    args = build_parser().parse_args(argv)
    config = make_config(
        args.preset,
        args.output,
        method=args.method,
        factor=args.factor,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        **shared_overrides(args),
    )
    try:
        run(config)
    except data.DatasetNotPreparedError as error:
        print(f"keras-normloss train: error: {error}", file=sys.stderr)
        return 1
    return 0
