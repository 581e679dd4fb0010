"""Training-step time of the papers' networks under every method of the table, in one process.

    python benchmarks/overhead.py                        # ResNet-56, batch 128, every method
    python benchmarks/overhead.py --models resnet20 resnet56 resnet110 wrn16_4
    python benchmarks/overhead.py --methods none weight-decay normloss oni

Every method of `keras_normloss.methods` (with its preset default factor and default layers) runs
on a copy of the same network; the variants run interleaved round by round (the order rotating
each round), so that drifts in machine speed hit all of them alike. Each reports the median step
time over its rounds, its ratio to no regularization, and the work the method adds, timed alone
(far less noisy than a difference of step times):
- a penalty: the penalties and their gradients;
- a constraint: rescaling and assigning every constrained kernel (each step);
- pbwn-epoch: the same projection, once per epoch (shown per projection);
- a reparametrization: every wrapper's effective kernel, forward and backward;
- an optimizer-level method: the decoupled update of every kernel.
The Norm Loss paper claims "lower computational complexity than most weight regularization
methods"; this measures it on a CPU.
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

from keras_normloss import methods, models, presets, reparam  # noqa: E402
from keras_normloss.methods.decoupled import extend_with_normloss  # noqa: E402

PRESET = presets.get("cifar10-resnet110")  # lr 0.1, momentum 0.9, wd 1e-4, λ 1e-3


def _timer(work):
    def run(reps):
        work()
        start = time.perf_counter()
        for _ in range(reps):
            work()
        return (time.perf_counter() - start) / reps

    return run


def extra_work_timer(model, applied):
    """Times just what a method adds to a step (see the module docstring), or None."""
    kind = applied.method.kind
    if kind == "penalty":
        kernels = [v for v in model.trainable_weights if v.regularizer is not None]

        @tf.function
        def work():
            with tf.GradientTape() as tape:
                total = tf.add_n([v.regularizer(v) for v in kernels])
            return total, tape.gradient(total, kernels)

    elif kind == "constraint":
        constrained = [v for v in model.trainable_weights if v.constraint is not None]

        @tf.function
        def work():
            for v in constrained:
                v.assign(v.constraint(v))

    elif kind == "epoch-projection":
        (projection,) = applied.callbacks
        work = tf.function(projection._project)
    elif kind == "reparametrization":
        wrappers = [
            layer
            for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, reparam.KernelReparametrization)
        ]
        variables = [v for w in wrappers for v in w.trainable_variables]

        @tf.function
        def work():
            with tf.GradientTape() as tape:
                total = tf.add_n([tf.reduce_sum(w.effective_kernel()) for w in wrappers])
            return tape.gradient(total, variables)

    elif kind == "optimizer":
        optimizer = model.optimizer
        # The private hook the decoupled update lives in (see keras_normloss.methods.keras_optimizer_hook).
        work = tf.function(lambda: optimizer._apply_weight_decay(model.trainable_variables))
    else:
        return None
    return _timer(work)


def build(name, method):
    model = models.get(name, seed=0)
    applied = methods.apply(model, method, presets.default_factor(PRESET, method))
    optimizer = None
    if applied.optimizer_options:
        optimizer = extend_with_normloss(keras.optimizers.SGD)(
            0.1, momentum=0.9, **applied.optimizer_options
        )
    return applied.model, applied, optimizer


def measure(name, method_names, batch_size, rounds, steps, warmup):
    built = {m: build(name, m) for m in method_names}
    timers = {
        m: sgd_step_timer(model, batch_size, optimizer=optimizer)
        for m, (model, _, optimizer) in built.items()
    }
    for run in timers.values():
        run(warmup)  # builds the optimizers too
    extra = {}
    for m, (model, applied, _) in built.items():
        timer = extra_work_timer(model, applied)
        extra[m] = statistics.median(timer(20) for _ in range(5)) if timer else 0.0
    times = {m: [] for m in timers}
    order = list(timers)
    for r in range(rounds):
        for m in order[r % len(order) :] + order[: r % len(order)]:
            times[m].append(timers[m](steps))
        print(f"  {name}: round {r + 1}/{rounds}", end="\r", flush=True)
    return {m: statistics.median(t) for m, t in times.items()}, extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet56"], help="registered names")
    parser.add_argument("--methods", nargs="+", default=list(methods.names()))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    method_names = ["none"] + [m for m in args.methods if m != "none"]
    for m in method_names:
        methods.get(m)  # an unknown name fails before anything is built

    print(
        f"keras {keras.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs, "
        f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, medians; "
        "cells: step time / none's (added work in ms, timed alone)"
    )
    columns = {}
    for name in args.models:
        step, extra = measure(
            name, method_names, args.batch_size, args.rounds, args.steps, args.warmup
        )
        columns[name] = step, extra
        print(" " * 40, end="\r")
        print(f"{name}: none {step['none']:.3f} s/step", flush=True)
    print()
    print("| method | " + " | ".join(args.models) + " |")
    print("|---|" + "---|" * len(args.models))
    print(
        "| none, s/step | " + " | ".join(f"{columns[n][0]['none']:.3f}" for n in args.models) + " |"
    )
    for m in method_names[1:]:
        cells = []
        for n in args.models:
            step, extra = columns[n]
            cells.append(f"{step[m] / step['none']:.3f} ({1e3 * extra[m]:.2f} ms)")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
