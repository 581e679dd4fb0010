"""One training run: config -> devices -> data -> model -> fit -> outputs.

    keras-normloss train --preset quick --dataset synthetic --output runs/quick

A run directory holds:

    config.json        everything needed to run it again (`--config` is not
                       needed: the same command resumes it)
    metrics.csv        one row per epoch (see `metrics.METRIC_COLUMNS`)
    dynamics.csv       every `--dynamics-every` steps (default 50), per layer kind: channel
                       norms, angular update, relative update, effective learning rate
                       (`keras_normloss.callbacks.NormDynamics`); resumed as metrics.csv is
    tensorboard/       Keras's scalars, per-kernel channel norms (NormMonitor) and the
                       dynamics; only where TensorFlow is installed (it writes them)
    checkpoint/        the last `--keep-checkpoints` checkpoints: weights +
                       optimizer state, each with a JSON sidecar (see
                       `checkpoints`); removed when the run is finished
    model.keras        the final model
    results.json       the final test error (the one to report), the method's timescale
                       (as config.json) and the last sampled dynamics, the best
                       epoch's (picked on the test set: optimistic), wall
                       time, precision and XLA, the backend, versions,
                       devices, and model.keras's SHA-256
    diverged.json      only if the run diverged: what became non-finite and
                       where; the same command then says so and stops

A run killed at any moment and started again with the same command
continues from its newest checkpoint that loads (every epoch, every
`--checkpoint-every` steps, and on SIGTERM or Ctrl-C). The data of epoch e, step k is
a function of (seed, e, k) alone, so a resumed run sees the batches an
uninterrupted run would have seen; with `--deterministic` its final weights
are the same. How a run stops early, and with which exit status: `faults`.

The same code trains on TensorFlow and on JAX: the devices (`distribution`) and the data
pipelines (`keras_normloss.data`) are the backend's; nothing here knows which it is.
"""

import contextlib
import dataclasses
import errno
import os
import sys

import keras

from keras_normloss import callbacks as norm_callbacks
from keras_normloss import data, errors
from keras_normloss.batch_norm import PreciseBatchNorm
from keras_normloss.methods import norm_theory
from keras_normloss.training import compute, norm_records, summaries
from keras_normloss.training.build import build_model, run_schedule, run_timescale
from keras_normloss.training.checkpoints import Checkpointer, CheckpointStore, ResumedMetrics
from keras_normloss.training.distribution import make_distribution
from keras_normloss.training.faults import (
    NonFiniteLoss,
    RunFailed,
    StopOnNonFiniteLoss,
    StopRequest,
)
from keras_normloss.training.messages import resume_line, summary_line  # noqa: F401
from keras_normloss.training.metrics import (
    EpochExtras,
    HeldOutEvaluation,
    MetricsCSV,
    check_metrics,
)
from keras_normloss.training.results import write_model_and_results
from keras_normloss.training.run_directory import (
    check_finished,
    check_not_diverged,
    check_run_dir,
    exclusive,
    record_divergence,
    write_json,
)
from keras_normloss.training.sizes import check_sizes


def run(config, verbose="auto"):
    """Trains one run and writes its directory (see the module docstring).

    Resumes from the directory's newest checkpoint that loads, and returns
    at once if the run is finished. Prints one summary line at the end.

    Args:
        config: a `RunConfig` (see `make_config`).
        verbose: Keras's `fit` verbosity ("auto" shows a progress bar).

    Returns:
        The run's results (the content of results.json).

    Raises:
        keras_normloss.errors.UsageError: if the output directory cannot hold
            this run, the machine cannot run its settings, or Keras runs on another
            backend than `config.backend`.
        keras_normloss.data.DatasetNotPreparedError: if the dataset is not
            prepared and `config.download` is False.
        keras_normloss.training.faults.RunFailed: if the loss, the penalty
            or the weights became non-finite (then `diverged.json` records
            it, and running it again raises `Diverged`), no checkpoint loads,
            a run file is damaged, or a file cannot be written (a full
            disk); nothing that was there is lost.
        keras_normloss.training.faults.Preempted: on SIGTERM or SIGINT
            during training, after writing a checkpoint; running it again
            resumes.
        keras_normloss.training.faults.Interrupted: on SIGTERM or SIGINT
            before training began; nothing new was written.

    Example:

    ```python
    results = run(make_config("quick", "runs/quick", dataset="synthetic", epochs=1))
    results["final_test_error"]
    ```
    """
    if config.backend != keras.backend.backend():
        raise errors.UsageError(
            f"this run is made for the {config.backend} backend and Keras runs on "
            f"{keras.backend.backend()} in this process; set KERAS_BACKEND={config.backend} "
            "before Keras is imported, or use `keras-normloss train --backend`"
        )
    check_run_dir(config)  # a bad --output is refused before anything is made
    # One process per run directory: a second is refused (`exclusive`). Under multiworker the
    # processes of one run share it, and the chief alone writes.
    held = contextlib.nullcontext() if config.strategy == "multiworker" else exclusive(config.output)
    with held:
        return _run_held(config, verbose)


def _run_held(config, verbose):
    state = check_run_dir(config)  # again, under the lock: another process may have finished it
    if state == "finished":
        results = check_finished(config.output)
        print(f"{config.output}: finished already; results.json and model.keras are there.")
        print(summary_line(results, config.output), flush=True)
        return results
    if state == "resume":
        check_not_diverged(config.output)
    stop = StopRequest()
    try:
        # With several processes a signal reaches one at a time: its handler would save and stop
        # that one while the others wait for it in their next collective operation (and under
        # MultiWorkerMirroredStrategy a checkpoint needs every worker: reading some variables is
        # collective). There, signals keep their default (the run resumes from its last
        # periodic checkpoint).
        with compute.dtype_policy(config.mixed_precision):
            if config.strategy == "multiworker":
                results = _train(config, state, verbose, None)
            else:
                with stop.on_signals():
                    results = _train(config, state, verbose, stop)
    except NonFiniteLoss as error:
        if os.path.isdir(config.output):
            record_divergence(config.output, error)
        raise
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise RunFailed(
            f"no space left on device while writing {error.filename or config.output}; "
            "the last checkpoint is intact: free space and run the same command to resume"
        ) from None
    if results:
        print(summary_line(results, config.output), flush=True)
    return results


def _train(config, state, verbose, stop):
    try:
        # First: multi-worker set-ups start their runtimes here, before any computation.
        distribution = make_distribution(config.strategy, config.deterministic)
    except ValueError as error:  # e.g. --strategy tpu where no TPU is found
        first_line = (str(error).splitlines() or [""])[0]
        raise errors.UsageError(
            f"--strategy {config.strategy} cannot run here: {first_line}"
        ) from None
    notes = compute.check(config, distribution)
    chief = distribution.chief
    # Before the seed: Keras's `set_random_seed` imports TensorFlow wherever it is installed, on
    # any backend, to seed it too (Keras 3.15); on JAX it is imported here first, quietly and
    # kept off the GPUs. It also writes the TensorBoard summaries (on the chief).
    tensorboard = summaries.tensorflow_for_summaries() is not None and chief
    keras.utils.set_random_seed(config.seed)

    pipelines, steps_per_epoch, timescale = _data(config, distribution, notes)
    info = pipelines.info

    schedule = run_schedule(config, steps_per_epoch)  # the optimizer's: each epoch logs its rate
    with distribution.scope():
        model, method_callbacks = build_model(config, info, schedule)
    check_sizes(config, info, model)  # the memory the batch needs
    try:
        distribution.prepare(model)
    except RuntimeError as error:
        raise RunFailed(str(error)) from None

    checkpoint_dir = os.path.join(config.output, "checkpoint")
    store = CheckpointStore(
        checkpoint_dir,
        config.keep_checkpoints,
        write=chief,
        metrics=_metric_state_restorable(distribution),
    )
    first_epoch, skip_steps = _restore(config, model, distribution, store, state)
    if chief:
        # Before anything is written: a metrics.csv that lost resumed epochs stops the run.
        check_metrics(os.path.join(config.output, "metrics.csv"), first_epoch)
        os.makedirs(config.output, exist_ok=True)
        write_json(
            os.path.join(config.output, "config.json"),
            {**dataclasses.asdict(config), "timescale": timescale},
        )

    if chief and not tensorboard:
        print(summaries.NO_TENSORFLOW_NOTE)
    callbacks = _callbacks(
        config, info, pipelines, distribution, tensorboard, steps_per_epoch,
        dict(store=store, stop=stop, method=method_callbacks, schedule=schedule, first=first_epoch),
    )  # fmt: skip

    fit = dict(
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )  # data is shuffled already
    with distribution.scope(), _progress_line_ended(verbose):
        _fit(
            model,
            lambda *position: distribution.process_batches(pipelines.train(*position)),
            config,
            first_epoch,
            skip_steps,
            steps_per_epoch,
            callbacks,
            fit,
            store.metric_state,
        )

    results = write_model_and_results(config, model, distribution, info, timescale)
    if chief:
        store.remove_all()
    return results


def _restore(config, model, distribution, store, state):
    """The position `(epoch, step)` training starts from: (0, 0) for a new run, else the
    newest checkpoint's, whose weights and optimizer state `model` then holds."""
    if state != "resume":
        return 0, 0
    with distribution.scope():
        # The weights file holds the optimizer's state (momentum, iterations, hence the
        # learning-rate schedule's position) too; its variables must exist before it is read.
        model.optimizer.build(model.trainable_variables)
        position = store.restore(
            model, report=lambda line: print(f"{config.output}: {line}", file=sys.stderr)
        )
    if position is None:
        return 0, 0
    print(f"{config.output}: {resume_line(*position, config.epochs)}")
    return position


def _data(config, distribution, notes):
    """Loads the run's data and says what it is (the data line, the start-up notes, the
    factor's timescale); refuses sizes that cannot fit. Returns the pipelines, the steps per
    epoch and the timescale record."""
    try:
        pipelines = _load_data(config)
    except data.DatasetOptionError as error:  # e.g. --image-size for CIFAR, ImageNet on JAX
        raise errors.UsageError(str(error)) from None
    info = pipelines.info
    held_out = (
        f", {info.validation_examples:,} validation (held out of training, the same for every seed)"
        if info.validation_examples
        else ""
    )
    subset = " (a fixed subset, the same for every seed)" if config.train_subset else ""
    print(
        f"data: {info.name}, {info.train_examples:,} training{subset}{held_out} and "
        f"{info.test_examples:,} test images of {'x'.join(map(str, info.image_shape))}, "
        f"{info.num_classes} classes" + (f", from {info.source}" if info.source else "")
    )
    check_sizes(config, info)  # before anything is built or written
    distribution.check_sizes(config.batch_size, info)
    steps_per_epoch = config.steps_per_epoch or info.steps_per_epoch(config.batch_size)
    if info.synthetic:
        print(
            "NOTE: training on SYNTHETIC data (random templates plus noise); "
            "the numbers say nothing about a real dataset."
        )
    for note in notes:
        print(note)
    timescale = run_timescale(config, steps_per_epoch)
    warning = norm_theory.timescale_warning(config.method, config.factor, timescale)
    if warning:
        print(warning)
    elif timescale and timescale.get("why_none"):
        print(f"NOTE: --method {config.method} has no timescale here: {timescale['why_none']}.")
    return pipelines, steps_per_epoch, timescale


def _callbacks(config, info, pipelines, distribution, tensorboard, steps_per_epoch, parts):
    """`fit`'s callbacks, in the order they must run at each epoch's end. `parts`: the
    checkpoint `store`, the `stop` request, the `method`'s own callbacks, the learning-rate
    `schedule` and the `first` epoch of this attempt."""
    chief = distribution.chief
    nan_guard = StopOnNonFiniteLoss(steps_per_epoch)
    checkpointer = Checkpointer(
        parts["store"], steps_per_epoch, config.checkpoint_every, parts["stop"]
    )
    callbacks = [
        # First at each epoch's end, as `fit`'s validation_data was: the divergence check reads
        # the test loss; their batch hooks are empty, so the guard still sees every step first.
        *_precise_batch_norm(config, pipelines, distribution, steps_per_epoch),  # before evaluating
        *_evaluations(config, info, pipelines, distribution),
        nan_guard,  # no other callback sees a step whose loss is not finite
        norm_callbacks.NormMonitor(
            log_dir=os.path.join(config.output, "tensorboard") if tensorboard else None
        ),
        *norm_records.dynamics_callbacks(config, chief, tensorboard),
        *parts["method"],  # before the logs and checkpoint: pbwn-epoch projects at epoch end
        EpochExtras(lambda epoch: parts["schedule"](epoch * steps_per_epoch)),
        *distribution.callbacks(),
    ]
    if chief:
        callbacks.append(
            MetricsCSV(os.path.join(config.output, "metrics.csv"), info.name, parts["first"])
        )
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(config.output, "tensorboard")))
    callbacks.append(checkpointer)  # last: an epoch is logged before it counts as done
    return callbacks


def _precise_batch_norm(config, pipelines, distribution, steps_per_epoch):
    """`--precise-bn`: BatchNormalization's statistics recomputed at each epoch's end over the
    first batches (at most an epoch's) of that epoch's training pass: the same batches on a
    resumed run, for every dataset held in memory (ImageNet's stream reshuffles)."""
    if not config.precise_bn:
        return []
    if distribution.multi_worker:
        # Each process would average its own batches: the workers' statistics would differ.
        print(
            f"NOTE: --precise-bn {config.precise_bn} is not applied over several processes: "
            "evaluations use BatchNormalization's moving averages."
        )
        return []
    # At most an epoch's batches: more would be batches of epochs not trained on yet.
    batches = min(config.precise_bn, steps_per_epoch)
    return [PreciseBatchNorm(lambda epoch: pipelines.train(epoch), batches)]


def _evaluations(config, info, pipelines, distribution):
    """The test split, and the images held out for validation if any, evaluated at each epoch's
    end under their own names (`test_*`, `validation_*`)."""
    splits = [("test", pipelines.test, info.test_steps(config.batch_size))]
    if pipelines.validation is not None:
        splits.append(
            ("validation", pipelines.validation, info.validation_steps(config.batch_size))
        )
    return [
        HeldOutEvaluation(
            distribution.evaluation_batches(batches),
            steps,
            callbacks=distribution.callbacks(),
            prefix=prefix,
        )
        for prefix, batches, steps in splits
    ]


def _load_data(config):
    return data.load(
        config.dataset,
        config.batch_size,
        backend=config.backend,
        seed=config.seed,
        steps_per_epoch=config.steps_per_epoch,
        data_dir=config.data_dir,
        download=config.download,
        crop_padding=config.crop_padding,
        augment=config.augment,
        image_size=config.image_size,
        validation_split=config.validation_split,
        train_subset=config.train_subset,
    )


def _metric_state_restorable(distribution):
    """Whether checkpoints keep the training metrics' running sums for a resumed epoch: not
    under several tf.distribute replicas (their metric variables are per replica, and reading
    one is a collective) nor over several processes; there a resumed epoch's training metrics
    average the steps after the resume only."""
    return not distribution.multi_worker and (
        distribution.backend == "jax" or distribution.replicas == 1
    )


@contextlib.contextmanager
def _progress_line_ended(verbose):
    """Ends the progress bar's line on stdout when training stops mid-epoch: Keras's bar
    rewrites its line with `\\r` and ends it only at the epoch's end, so the stop or error line
    that follows (stderr) was glued to it. At worst (a stop just after an epoch ended) this
    leaves one blank line."""
    try:
        yield
    except BaseException:
        if verbose:
            sys.stdout.write("\n")
            sys.stdout.flush()
        raise


def _fit(
    model, train, config, first_epoch, skip_steps, steps_per_epoch, callbacks, fit, metric_state
):
    if skip_steps and first_epoch < config.epochs:
        # The rest of an epoch interrupted mid-way, on its own, its training metrics' running
        # sums as they were at the checkpoint.
        for callback in callbacks:
            if hasattr(callback, "step_offset"):
                callback.step_offset = skip_steps
        model.fit(
            train(first_epoch, skip_steps),
            initial_epoch=first_epoch,
            epochs=first_epoch + 1,
            steps_per_epoch=steps_per_epoch - skip_steps,
            **{**fit, "callbacks": [ResumedMetrics(metric_state), *callbacks]},
        )
        first_epoch += 1
    if first_epoch < config.epochs:
        model.fit(
            train(first_epoch),
            initial_epoch=first_epoch,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            **fit,
        )
