"""Training-step time of a CIFAR ResNet with no regularization, weight decay,
Norm Loss and weight rescaling (WRS), measured in one process.

    python benchmarks/overhead.py                        # ResNet-56, batch 128
    python benchmarks/overhead.py --models resnet20 resnet56 resnet110 wrn16_4

The variants run interleaved round by round (the order rotating each round),
so that drifts in machine speed hit all of them alike; each reports the
median step time over its rounds and its ratio to no regularization and to
weight decay. The Norm Loss paper claims negligible overhead; our bar is
normloss/none <= 1.03 and normloss/weight-decay <= 1.01.
"""

import argparse
import os
import statistics
import time

# Not TF_ENABLE_ONEDNN_OPTS=0: on this CPU it halves training speed.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from step_timing import sgd_step_timer  # noqa: E402

from keras_normloss import NormLoss, WeightRescaling, models, weight_decay  # noqa: E402

VARIANTS = {
    "none": {},
    "weight-decay": {"kernel_regularizer": weight_decay(1e-4)},
    "normloss": {"kernel_regularizer": NormLoss(1e-3)},
    "wrs": {"kernel_constraint": WeightRescaling()},
}


def extra_work_timer(model):
    """Times just what a variant adds to a step, in isolation.

    For a regularizer: the penalties and their gradients; for a constraint:
    rescaling and assigning every constrained kernel. Far less noisy than
    the difference of two step times.
    """
    kernels = [v for v in model.trainable_weights if v.regularizer is not None]
    constrained = [v for v in model.trainable_weights if v.constraint is not None]

    @tf.function
    def penalty_and_gradient():
        with tf.GradientTape() as tape:
            total = tf.add_n([v.regularizer(v) for v in kernels])
        return total, tape.gradient(total, kernels)

    @tf.function
    def apply_constraints():
        for v in constrained:
            v.assign(v.constraint(v))

    work = penalty_and_gradient if kernels else apply_constraints if constrained else None
    if work is None:
        return None

    def run(reps):
        work()
        start = time.perf_counter()
        for _ in range(reps):
            work()
        return (time.perf_counter() - start) / reps

    return run


def measure(name, batch_size, rounds, steps, warmup):
    built = {v: models.get(name, seed=0, **kw) for v, kw in VARIANTS.items()}
    timers = {v: sgd_step_timer(model, batch_size) for v, model in built.items()}
    extra = {}
    for v, model in built.items():
        timer = extra_work_timer(model)
        extra[v] = statistics.median(timer(20) for _ in range(5)) if timer else 0.0
    for run in timers.values():
        run(warmup)
    times = {v: [] for v in timers}
    order = list(timers)
    for r in range(rounds):
        for v in order[r % len(order) :] + order[: r % len(order)]:
            times[v].append(timers[v](steps))
        print(f"  {name}: round {r + 1}/{rounds}", end="\r", flush=True)
    return {v: statistics.median(t) for v, t in times.items()}, extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet56"], help="registered names")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    print(
        f"keras {keras.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs, "
        f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, medians"
    )
    header = (
        "| model | none s/step | wd s/step | normloss s/step | wrs s/step | normloss/none "
        "| normloss/wd | wrs/none | added work ms: wd / normloss / wrs | normloss added / none step |"
    )
    rows = []
    for name in args.models:
        m, extra = measure(name, args.batch_size, args.rounds, args.steps, args.warmup)
        rows.append(
            f"| {name} | {m['none']:.3f} | {m['weight-decay']:.3f} | {m['normloss']:.3f} | {m['wrs']:.3f} "
            f"| {m['normloss'] / m['none']:.3f} | {m['normloss'] / m['weight-decay']:.3f} "
            f"| {m['wrs'] / m['none']:.3f} "
            f"| {1e3 * extra['weight-decay']:.2f} / {1e3 * extra['normloss']:.2f} / {1e3 * extra['wrs']:.2f} "
            f"| {100 * extra['normloss'] / m['none']:.2f}% |"
        )
        print(" " * 40, end="\r")
        print(rows[-1], flush=True)
    print()
    print(header)
    print("|" + "---|" * 10)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
