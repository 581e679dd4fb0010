"""The command line of `keras-normloss train`, and the options that `train` and `sweep` share.

Shared options become `make_config` overrides of the same name; flags are stored as None when
absent, so that the preset's value stands.

Nothing here imports Keras or TensorFlow at module level: `--help` and argument errors answer
without them, and `main` chooses and starts Keras's backend (`cli.start_backend`: TensorFlow
quietly, or JAX) once the options are read.
"""

import sys

from keras_normloss import choices, cli, errors, methods
from keras_normloss.choices import (
    AUGMENTATIONS,
    JIT_COMPILE,
    LR_SCHEDULES,
    MIXED_PRECISION,
    OPTIMIZERS,
)
from keras_normloss.training import presets
from keras_normloss.training.config import (
    ADAPTIVE_LR,
    DEFAULT_KEEP_CHECKPOINTS,
    STRATEGIES,
    WEIGHT_DECAY_ON,
    make_config,
)

_SHARED_OPTIONS = (
    (
        "--dataset",
        dict(
            help="cifar10, cifar100, imagenet2012, fashion_mnist, mnist, fashion_mnist_mini, "
            "fashion_mnist_small "
            "(shipped: no download), folder (--data-dir: one sub-folder per class), any "
            "tensorflow-datasets image-classification name, or synthetic (default: the preset's)"
        ),
    ),
    (
        "--augment",
        dict(
            choices=AUGMENTATIONS,
            help="training augmentation (default: the dataset's: crop-flip; mnist crop)",
        ),
    ),
    (
        "--image-size",
        dict(
            type=cli.positive_int,
            help="resize a folder's or a tfds dataset's images to this side (default: 64 for a "
            "folder, whatever its images' size, and 224 for imagenet2012; a tfds dataset's own "
            "size, 64 if it varies)",
        ),
    ),
    ("--model", dict(help="a registered model name (default: the preset's)")),
    ("--epochs", dict(type=cli.positive_int, help="epochs to train (default: the preset's)")),
    (
        "--steps-per-epoch",
        dict(
            type=cli.positive_int,
            help="steps per epoch, at most one pass over the training data (more is refused); "
            "default: one pass",
        ),
    ),
    ("--lr", dict(type=cli.non_negative_float, help="initial (peak) learning rate")),
    (
        "--momentum",
        dict(
            type=cli.non_negative_float,
            help="SGD's momentum, below 1 (default: the preset's, 0.9 in every one)",
        ),
    ),
    (
        "--lr-schedule",
        dict(
            choices=LR_SCHEDULES,
            help="step (the papers': x decay at the preset's epochs; constant where the preset "
            "has none), linear (to zero at the end), cosine or constant (default: the preset's)",
        ),
    ),
    (
        "--warmup-epochs",
        dict(
            type=cli.non_negative_float,
            help="linear warmup from 0 to --lr over this many epochs, fractions allowed "
            "(default: the preset's)",
        ),
    ),
    (
        "--validation-split",
        dict(
            type=cli.non_negative_float,
            metavar="FRACTION_OR_COUNT",
            help="hold out this fraction (< 1) or number (>= 1) of the training images for "
            "validation, the same images for every seed; 0: none (default: the preset's)",
        ),
    ),
    (
        "--train-subset",
        dict(
            type=cli.positive_int,
            metavar="N",
            help="train on N of the training images left after --validation-split, the same "
            "images for every seed and method (validation and test images untouched); default: "
            "all of them",
        ),
    ),
    (
        "--precise-bn",
        dict(
            type=cli.non_negative_int,
            metavar="BATCHES",
            help="recompute BatchNormalization's statistics over this many training batches at "
            "each epoch's end, before evaluating; 0: the moving averages (default: the "
            "preset's: 10 for quick, 0 for the others)",
        ),
    ),
    (
        "--deterministic",
        dict(
            action="store_const",
            const=True,
            help="deterministic ops (slower; TensorFlow's, or XLA's on JAX GPUs): "
            "bit-reproducible runs",
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
            help="with --method weight-decay(-decoupled): every trainable parameter (the "
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
    (
        "--mixed-precision",
        dict(
            choices=MIXED_PRECISION,
            help="off (float32, the default), float16 (GPUs; loss scaling is automatic) or "
            "bfloat16 (TPUs, recent GPUs and CPUs); the penalty stays float32",
        ),
    ),
    (
        "--jit-compile",
        dict(
            choices=JIT_COMPILE,
            help="XLA: auto (Keras's choice: on TensorFlow never under a tf.distribute "
            "strategy, so never here; on JAX always), on or off; default auto",
        ),
    ),
    (
        "--strategy",
        dict(
            default="auto",
            choices=STRATEGIES,
            help="auto (all GPUs, else the CPU), mirrored (all devices, CPUs too), multiworker "
            "(TF_CONFIG; on JAX KERAS_DISTRIBUTION_* or a cluster's own variables), tpu or "
            "one-device; default auto",
        ),
    ),
    (
        "--backend",
        dict(
            choices=tuple(cli.BACKENDS),
            help="Keras's backend: tensorflow (tf.distribute, tf.data) or jax "
            "(keras.distribution, NumPy pipelines; no TensorFlow needed); default: "
            "KERAS_BACKEND, else tensorflow where installed, else jax",
        ),
    ),
    (
        "--data-dir",
        dict(
            help="where the dataset is: the tfds data directory (default: $TFDS_DATA_DIR), "
            "the four IDX files of (fashion_)mnist, or the image folder"
        ),
    ),
    (
        "--download",
        dict(
            action="store_const",
            const=True,
            help="let tfds or Keras download a missing dataset (never without this flag)",
        ),
    ),
)


def add_run_options(parser):
    """Adds the options that override a preset's settings (`shared_overrides` reads them):
    `train`, `sweep` and the study's command take the same ones."""
    for flag, kwargs in _SHARED_OPTIONS:
        parser.add_argument(flag, **kwargs)


def add_shared_arguments(parser):
    """Adds `--preset` and the options that `train` and `sweep` share."""
    parser.add_argument(
        "--preset",
        required=True,
        choices=sorted(presets.PRESETS),
        help="the papers' settings to start from (keras_normloss/training/presets.py)",
    )
    add_run_options(parser)
    # Not a setting of the run: read by `keras_normloss.cli` before TensorFlow starts.
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's start-up lines (also KERAS_NORMLOSS_VERBOSE=1)",
    )


def shared_overrides(args):
    """The `make_config` overrides given by the shared options of `args`."""
    return {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _ in _SHARED_OPTIONS
    }


def build_parser():
    """The parser of `keras-normloss train`."""
    parser = cli.ArgumentParser(
        prog="keras-normloss train",
        description="Train one run of a preset; the same command resumes it. Exit status: 0 "
        "done, 1 the run failed (it diverged, unreadable checkpoints, damaged run files, full "
        "disk), 2 bad input, 130 stopped by Ctrl-C (SIGINT) and 143 by SIGTERM (after a "
        "checkpoint, if training had begun).",
    )
    add_shared_arguments(parser)
    parser.add_argument(
        "--method",
        *(f"--{old}" for old, new in choices.RENAMED.items() if new == "method"),
        dest="method",
        default="normloss",
        choices=methods.names(),
        help="how weight norms are controlled (see keras_normloss.methods; "
        "--regularizer is the old name of this option)",
    )
    parser.add_argument(
        "--factor",
        type=cli.non_negative_float,
        metavar="FACTOR",
        help="the method's factor: lambda for normloss(-decoupled), so and srip, wd for "
        "weight-decay(-decoupled) (default: the preset's; the decoupled defaults are "
        "converted for the optimizer's learning rate)",
    )
    parser.add_argument(
        "--batch-size",
        type=cli.positive_int,
        help="the global batch, at most the training split and what the memory holds "
        "(default: the preset's)",
    )
    parser.add_argument("--seed", type=cli.seed, default=0, help="0 to 2**32 - 1 (default 0)")
    parser.add_argument(
        "--checkpoint-every",
        type=cli.positive_int,
        metavar="STEPS",
        help="also checkpoint every STEPS steps (always at each epoch's end, and on SIGTERM "
        "or Ctrl-C)",
    )
    parser.add_argument(
        "--dynamics-every",
        type=cli.non_negative_int,
        metavar="STEPS",
        help="measure the channels' norms, angular updates and effective learning rates every "
        "STEPS steps into dynamics.csv (default 50; 0: off)",
    )
    parser.add_argument(
        "--keep-checkpoints",
        type=cli.positive_int,
        metavar="N",
        help=f"keep the last N checkpoints (default {DEFAULT_KEEP_CHECKPOINTS}); a resume "
        "takes the newest that loads",
    )
    parser.add_argument(
        "--output", required=True, help="the run directory (the same command resumes it)"
    )
    return parser


@cli.command("train")
def main(argv=None):
    """`keras-normloss train`. Returns the exit status (see `keras_normloss.training.faults`):
    0 done, 1 the run failed, 130/143 stopped by SIGINT/SIGTERM; exits with status 2 on bad
    input."""
    args = build_parser().parse_args(argv)
    cli.start_backend(args.backend, args.verbose)
    from keras_normloss import data
    from keras_normloss.training.engine import run
    from keras_normloss.training.faults import Interrupted, Preempted, RunStopped

    config = make_config(
        args.preset,
        args.output,
        method=args.method,
        factor=args.factor,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        dynamics_every=args.dynamics_every,
        **shared_overrides(args),
    )
    try:
        run(config)
    except (data.DatasetNotPreparedError, data.MalformedDatasetError) as error:
        # Bad input: which dataset, where, and whether to download are the user's to change.
        raise errors.UsageError(str(error)) from None
    except RunStopped as error:
        # A stop by a signal says "stopped by ..."; the others are errors.
        kind = "" if isinstance(error, (Preempted, Interrupted)) else "error: "
        print(f"keras-normloss train: {kind}{error}", file=sys.stderr, flush=True)
        return error.exit_status
    return 0
