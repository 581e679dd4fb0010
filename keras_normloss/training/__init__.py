"""Training runs, one job per module:

    config.py                  RunConfig and make_config: what defines a run, validated
    run_directory.py           whether --output can hold the run; atomic JSON files
    strategies.py              the tf.distribute strategy, the chief, the device report
    keras_multiworker_patch.py the patch of private Keras code for multi-worker `fit`
    compute.py                 mixed precision and XLA, and the combinations refused
    build.py                   the compiled model: network, method, optimizer, schedule
    checkpoints.py             the last N checkpoints, verified on resume
    faults.py                  early stops (SIGTERM, NaN, failures) and their exit statuses
    metrics.py                 metrics.csv and the per-epoch log entries
    run.py                     one run, start to end
    parsers.py                 the `train` command line and the options `sweep` shares

`keras_normloss.train` (the `keras-normloss train` subcommand) re-exports the entry points.
"""

from keras_normloss.training.checkpoints import (
    Checkpointer,
    CheckpointStore,
    CheckpointsUnreadable,
    CheckpointWriteFailed,
    random_state_variables,
)
from keras_normloss.training.config import (
    ADAPTIVE_LR,
    OPTIMIZERS,
    WEIGHT_DECAY_ON,
    RunConfig,
    make_config,
)
from keras_normloss.training.faults import NonFiniteLoss, Preempted, RunFailed, RunStopped
from keras_normloss.training.metrics import METRIC_COLUMNS, read_metrics
from keras_normloss.training.parsers import (
    add_shared_arguments,
    build_parser,
    main,
    shared_overrides,
)
from keras_normloss.training.run import run, summary_line
from keras_normloss.training.run_directory import check_run_dir
from keras_normloss.training.strategies import STRATEGIES, is_chief, make_strategy

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
    "make_strategy",
    "random_state_variables",
    "read_metrics",
    "run",
    "shared_overrides",
    "summary_line",
]
