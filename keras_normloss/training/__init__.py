"""The training engine (the application, over the library): runs, presets and sweeps, one job per
module:

    config.py                  RunConfig and make_config: what defines a run, validated
    run_directory.py           whether --output can hold the run; atomic JSON files; whether a
                               finished run's files are whole; diverged.json
    distribution.py            the run's devices whatever the backend: the interface `run` uses
    strategies.py              ... on TensorFlow: the tf.distribute strategy, the chief, devices
    keras_distribution.py      ... on JAX: keras.distribution.DataParallel, jax.distributed
    keras_multiworker_patch.py the patch of private Keras code for multi-worker `fit` (TF)
    summaries.py               whether TensorBoard summaries can be written (TensorFlow's)
    compute.py                 mixed precision and XLA, and the combinations refused
    sizes.py                   steps and batch sizes that cannot fit the data or the memory
    build.py                   the compiled model: network, method, optimizer, schedule
    checkpoints.py             the last N checkpoints, verified on resume
    faults.py                  early stops (signals, divergence, failures), their exit statuses
    metrics.py                 metrics.csv (checked on resume) and the per-epoch log entries
    engine.py                  one run, start to end (`run`)
    results.py                 results.json and model.keras at a run's end
    presets.py                 the papers' settings, each citing its source (`presets.get`)
    sweep.py                   a resumable grid of runs in processes of their own
    sweep_summary.py           the sweep's summary.csv and each method at its chosen factor

`keras_normloss.train` (the `keras-normloss train` subcommand) re-exports the entry points.
Nothing here imports Keras before a name is used, so the command line parses its options fast
and chooses Keras's backend before Keras starts. Only `distribution`, the two modules it names
and the data pipelines know which backend runs.
"""

from keras_normloss import _lazy

# Public name -> the module that defines it, imported when the name is first used (PEP 562):
# the command line reads its options through `keras_normloss.cli.parsers` without starting
# TensorFlow (`keras_normloss.train` adds the parser's names to these).
_HOME = {
    "Checkpointer": "keras_normloss.training.checkpoints:Checkpointer",
    "CheckpointStore": "keras_normloss.training.checkpoints:CheckpointStore",
    "CheckpointsUnreadable": "keras_normloss.training.checkpoints:CheckpointsUnreadable",
    "CheckpointWriteFailed": "keras_normloss.training.checkpoints:CheckpointWriteFailed",
    "random_state_variables": "keras_normloss.training.checkpoints:random_state_variables",
    "ADAPTIVE_LR": "keras_normloss.training.config:ADAPTIVE_LR",
    "OPTIMIZERS": "keras_normloss.training.config:OPTIMIZERS",
    "STRATEGIES": "keras_normloss.training.config:STRATEGIES",
    "WEIGHT_DECAY_ON": "keras_normloss.training.config:WEIGHT_DECAY_ON",
    "RunConfig": "keras_normloss.training.config:RunConfig",
    "make_config": "keras_normloss.training.config:make_config",
    "NonFiniteLoss": "keras_normloss.training.faults:NonFiniteLoss",
    "Preempted": "keras_normloss.training.faults:Preempted",
    "RunFailed": "keras_normloss.training.faults:RunFailed",
    "RunStopped": "keras_normloss.training.faults:RunStopped",
    "METRIC_COLUMNS": "keras_normloss.training.metrics:METRIC_COLUMNS",
    "read_metrics": "keras_normloss.training.metrics:read_metrics",
    "run": "keras_normloss.training.engine:run",
    "summary_line": "keras_normloss.training.messages:summary_line",
    "check_run_dir": "keras_normloss.training.run_directory:check_run_dir",
    "make_distribution": "keras_normloss.training.distribution:make_distribution",
    "is_chief": "keras_normloss.training.strategies:is_chief",
    "make_strategy": "keras_normloss.training.strategies:make_strategy",
}


__getattr__ = _lazy.attributes(__name__, _HOME)


__all__ = [
    "ADAPTIVE_LR",
    "METRIC_COLUMNS",
    "OPTIMIZERS",
    "STRATEGIES",
    "WEIGHT_DECAY_ON",
    "CheckpointStore",
    "Checkpointer",
    "CheckpointWriteFailed",
    "CheckpointsUnreadable",
    "NonFiniteLoss",
    "Preempted",
    "RunConfig",
    "RunFailed",
    "RunStopped",
    "check_run_dir",
    "is_chief",
    "make_config",
    "make_distribution",
    "make_strategy",
    "random_state_variables",
    "read_metrics",
    "run",
    "summary_line",
]
