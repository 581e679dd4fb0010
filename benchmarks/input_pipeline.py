"""Is the CIFAR input pipeline fast enough to feed ResNet-20 training?

    python benchmarks/input_pipeline.py [--data-dir DIR]

Measures the images per second of `keras_normloss.data.cifar`'s training
stream (shuffle, 4-pixel pad, random crop, flip, normalise, batch 128) and
the images per second a ResNet-20 training step consumes at batch 128, on
this machine, one after the other. The pipeline must not be the
bottleneck: pipeline / training >= 2. With no prepared CIFAR-10 in
`--data-dir`, tfds's mock data of the same shapes and dtype (uint8 32x32x3)
stands in, and the output says so.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from step_timing import sgd_step_timer  # noqa: E402

from keras_normloss import data, models  # noqa: E402


def pipeline_rate(pipelines, batches, batch_size):
    iterator = iter(pipelines.train())
    for _ in range(20):  # fill the cache, the shuffle buffer and prefetch
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def training_rate(steps, batch_size):
    run = sgd_step_timer(models.get("resnet20", seed=0), batch_size)
    run(3)  # trace and warm up
    return batch_size / run(steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--mock-examples",
        type=int,
        default=50_000,
        help="size of the mock training split when CIFAR-10 is not prepared",
    )
    args = parser.parse_args(argv)
    try:
        pipelines = data.cifar("cifar10", args.batch_size, data_dir=args.data_dir)
        source = "CIFAR-10 from tfds"
    except data.DatasetNotPreparedError:
        with tfds.testing.mock_data(num_examples=args.mock_examples):
            pipelines = data.cifar("cifar10", args.batch_size)
        source = "tfds mock data in CIFAR-10's shapes (no prepared CIFAR-10 found)"
    feed = pipeline_rate(pipelines, args.batches, args.batch_size)
    need = training_rate(args.steps, args.batch_size)
    print(
        f"keras {keras.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs; data: {source}"
    )
    print("| what | images/s |")
    print("|---|---|")
    print(f"| CIFAR training pipeline, batch {args.batch_size} | {feed:,.0f} |")
    print(f"| ResNet-20 training step, batch {args.batch_size} | {need:,.0f} |")
    print(f"pipeline / training = {feed / need:.1f} (must be >= 2)")


if __name__ == "__main__":
    main()
