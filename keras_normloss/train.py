"""`keras-normloss train`: one training run. The code lives in `keras_normloss.training`, one job
per module; this module keeps the names that callers (the command line, sweep, notebooks,
scripts) have always imported from here.

    keras-normloss train --preset quick --dataset synthetic --output runs/quick
"""

from keras_normloss.training import (  # noqa: F401
    ADAPTIVE_LR,
    METRIC_COLUMNS,
    OPTIMIZERS,
    STRATEGIES,
    WEIGHT_DECAY_ON,
    NonFiniteLoss,
    Preempted,
    RunConfig,
    RunFailed,
    RunStopped,
    add_shared_arguments,
    build_parser,
    check_run_dir,
    is_chief,
    main,
    make_config,
    make_strategy,
    random_state_variables,
    read_metrics,
    run,
    shared_overrides,
    summary_line,
)
