"""Training runs, one job per module:

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
    run.py                     one run, start to end
    parsers.py                 the `train` command line and the options `sweep` shares

`keras_normloss.train` (the `keras-normloss train` subcommand) re-exports the entry points.
Nothing here imports Keras before a name is used, so the command line parses its options fast
and chooses Keras's backend before Keras starts. Only `distribution`, the two modules it names
and the data pipelines know which backend runs.
"""

import sys
import types

# Public name -> the module that defines it, imported when the name is first used (PEP 562):
# the command line reads its options through `parsers` without starting TensorFlow.
_HOME = {
    "Checkpointer": "checkpoints",
    "CheckpointStore": "checkpoints",
    "CheckpointsUnreadable": "checkpoints",
    "CheckpointWriteFailed": "checkpoints",
    "random_state_variables": "checkpoints",
    "ADAPTIVE_LR": "config",
    "OPTIMIZERS": "config",
    "STRATEGIES": "config",
    "WEIGHT_DECAY_ON": "config",
    "RunConfig": "config",
    "make_config": "config",
    "NonFiniteLoss": "faults",
    "Preempted": "faults",
    "RunFailed": "faults",
    "RunStopped": "faults",
    "METRIC_COLUMNS": "metrics",
    "read_metrics": "metrics",
    "add_shared_arguments": "parsers",
    "build_parser": "parsers",
    "main": "parsers",
    "shared_overrides": "parsers",
    "run": "run",
    "summary_line": "messages",
    "check_run_dir": "run_directory",
    "make_distribution": "distribution",
    "is_chief": "strategies",
    "make_strategy": "strategies",
}


class _Package(types.ModuleType):
    """This package, keeping `run` the function: importing the submodule `training.run` sets
    the package's attribute `run` to that module (an eager `from .run import run` used to set
    it back at once)."""

    def __setattr__(self, name, value):
        if name == "run" and isinstance(value, types.ModuleType):
            value = value.run
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'keras_normloss.training' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"keras_normloss.training.{_HOME[name]}"), name)
    globals()[name] = value
    return value


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
    "add_shared_arguments",
    "build_parser",
    "check_run_dir",
    "is_chief",
    "main",
    "make_config",
    "make_distribution",
    "make_strategy",
    "random_state_variables",
    "read_metrics",
    "run",
    "shared_overrides",
    "summary_line",
]
