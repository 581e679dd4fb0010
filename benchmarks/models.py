"""Our ResNet-50 against keras.applications.ResNet50, train-step time.

    python benchmarks/models.py                 # batch 32, 224x224, 8 rounds

Both models are built in one process (weights=None, 1000 classes), compiled
with SGD momentum 0.9, and timed interleaved round by round (order
alternating). Our builder must not be slower: ratio ours/keras <= 1.05.
"""

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from step_timing import sgd_step_timer  # noqa: E402

from keras_normloss import models  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    shape = (args.image_size, args.image_size, 3)
    built = {
        "keras_normloss.models.resnet50": models.resnet50(input_shape=shape, seed=0),
        # logits, like ours, so that both compute the same loss
        "keras.applications.ResNet50": keras.applications.ResNet50(
            weights=None, input_shape=shape, classifier_activation=None
        ),
    }
    timers = {name: sgd_step_timer(m, args.batch_size) for name, m in built.items()}
    for run in timers.values():
        run(2)  # trace and warm up
    times = {name: [] for name in timers}
    order = list(timers)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(timers[name](args.steps))
        print(f"round {r + 1}/{args.rounds}", end="\r", flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    ours, theirs = med.values()
    print(
        f"keras {keras.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs, "
        f"batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{args.rounds} rounds x {args.steps} steps, medians"
    )
    print("| model | parameters | s/step |")
    print("|---|---|---|")
    for name, m in built.items():
        print(f"| {name} | {m.count_params():,} | {med[name]:.3f} |")
    print(f"ratio ours / keras.applications: {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
