"""The first, untrained Fashion-MNIST grid (kept to reproduce README's old table); superseded by
fashion_mnist_study.py, which chooses factors on validation and trains each run far longer.

    apt-get install dataset-fashion-mnist      # once: the real dataset, no other download
    python benchmarks/fashion_mnist_grid.py    # about an hour on 2 CPU cores; resumable
    python benchmarks/fashion_mnist_grid.py --plot-only   # redraw docs/results/ from the runs

The `fashion-mnist` preset (ResNet-8, lr 0.1 per 128 images scaled with the batch, x0.1 after
epoch 2 of 3: see `keras_normloss.presets`), three seeds each, as three sweeps into
one directory (`keras_normloss.sweep`, so it resumes where it stopped):

1. the factor: weight decay and Norm Loss at 1e-4, 1e-3, 1e-2, 1e-1, and none and WRS, at
   batch 128;
2. the batch size: none, weight decay (1e-3) and Norm Loss (1e-2), the preset's factors, and WRS, at
   batches 32 and 512 (128 is in sweep 1);
3. the peers of the paper's tables: PBWN, WN, ONI, OLM and OLM-L1 at batch 128.

Budget: an epoch is `--images-per-epoch` training images (default 3,072: 24 steps of 128),
drawn afresh from the 60,000 each epoch, so a run sees 9,216 training images (15 % of one pass
over the training set) in 3 epochs; every epoch is tested on all 10,000 test images. The budget
is what 2 CPU cores allow in an hour, far from the papers' 160-200 epochs: the numbers say what
these methods do early in training, not at convergence.

Writes `summary.csv` (one row per run) and the figures to `--docs` (default docs/results/):
error against the factor, error against the batch size, channel norms over training, and each
method's final error over seeds; `grid.json` records the command, the machine and the wall time.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PRESET = "fashion-mnist"
FACTORS = (1e-4, 1e-3, 1e-2, 1e-1)
SEEDS = (0, 1, 2)
BASE_BATCH = 128
OTHER_BATCHES = (32, 512)
PEERS = ("pbwn", "wn", "oni", "olm", "olm-l1")
BASELINES = ("none", "weight-decay", "normloss", "wrs")


def sweeps(
    images_per_epoch,
    methods=BASELINES,
    factors=FACTORS,
    base_batch=BASE_BATCH,
    other_batches=OTHER_BATCHES,
    peers=PEERS,
):
    """The three sweeps: (name, keyword arguments of `keras_normloss.sweep.sweep`)."""

    def steps(batch):
        return max(1, images_per_epoch // batch)

    grids = [
        (
            "factor",
            dict(
                regularizers=list(methods),
                factors=list(factors),
                batch_sizes=[base_batch],
                steps_per_epoch=steps(base_batch),
            ),
        )
    ]
    for batch in other_batches:
        grids.append(
            (
                f"batch {batch}",
                dict(
                    regularizers=list(methods),
                    factors=[],  # the preset's
                    batch_sizes=[batch],
                    steps_per_epoch=steps(batch),
                ),
            )
        )
    if peers:
        grids.append(
            (
                "peers",
                dict(
                    regularizers=list(peers),
                    factors=[],
                    batch_sizes=[base_batch],
                    steps_per_epoch=steps(base_batch),
                ),
            )
        )
    return grids


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/fashion-mnist-grid", help="the sweep directory")
    parser.add_argument("--docs", default="docs/results", help="where summary.csv and figures go")
    parser.add_argument("--images-per-epoch", type=int, default=3072)
    parser.add_argument("--epochs", type=int, default=3, help="default: 3, as run")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--data-dir", help="the four Fashion-MNIST IDX files (default: found)")
    parser.add_argument(
        "--dataset", default=None, help="another dataset (tests use fashion_mnist_mini)"
    )
    parser.add_argument("--model", default=None, help="another model (default: the preset's)")
    parser.add_argument("--methods", nargs="+", default=list(BASELINES), help="swept methods")
    parser.add_argument(
        "--factors",
        type=float,
        nargs="*",
        default=list(FACTORS),
        help="the factor sweep's factors (none given: each method's preset factor)",
    )
    parser.add_argument("--base-batch", type=int, default=BASE_BATCH)
    parser.add_argument("--other-batches", type=int, nargs="*", default=list(OTHER_BATCHES))
    parser.add_argument("--peers", nargs="*", default=list(PEERS), help="run at the base batch")
    parser.add_argument("--plot-only", action="store_true", help="draw from finished runs")
    args = parser.parse_args(argv)

    from keras_normloss import cli, plots, sweep

    start = time.time()
    log_path = os.path.join(args.output, "grid.json")
    if not args.plot_only:
        grids = sweeps(
            args.images_per_epoch,
            args.methods,
            args.factors,
            args.base_batch,
            args.other_batches,
            args.peers,
        )
        for name, grid in grids:
            print(f"== sweep: {name}", flush=True)
            try:
                _sweep(sweep, args, grid)
            except (cli.UsageError, sweep.RunError) as error:
                print(f"fashion_mnist_grid: error: {error}", file=sys.stderr)
                return getattr(error, "exit_status", 2)
        os.makedirs(args.output, exist_ok=True)
        previous = _read(log_path).get("wall_seconds", 0.0)
        with open(log_path, "w") as f:
            json.dump(
                {
                    "command": " ".join(
                        ["python", "benchmarks/fashion_mnist_grid.py", *sys.argv[1:]]
                    ),
                    "wall_seconds": previous + time.time() - start,
                    "machine": {
                        "cpu": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count(),
                        "python": platform.python_version(),
                    },
                    "images_per_epoch": args.images_per_epoch,
                },
                f,
                indent=2,
            )
    rows = sweep.write_summary(args.output)
    os.makedirs(args.docs, exist_ok=True)
    shutil.copy(os.path.join(args.output, "summary.csv"), os.path.join(args.docs, "summary.csv"))
    if os.path.exists(log_path):
        shutil.copy(log_path, os.path.join(args.docs, "grid.json"))
    figures = plots.plot_grid(args.output, args.docs, base_batch=args.base_batch)
    print(
        f"{len(rows)} runs; {os.path.join(args.docs, 'summary.csv')}; figures: {', '.join(figures)}"
    )
    return 0


def _sweep(sweep, args, grid):
    sweep.sweep(
        PRESET,
        args.output,
        seeds=args.seeds,
        epochs=args.epochs,
        dataset=args.dataset,
        model=args.model,
        data_dir=args.data_dir,
        deterministic=True,
        # The settings this grid was run with (README, Results), which the preset had then;
        # the preset now has the short-budget recipe of the study (fashion_mnist_study.py).
        lr_schedule="step",
        warmup_epochs=0.0,
        lr_decay_epochs=[2],
        validation_split=0,
        **grid,
    )


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
