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
Last, the cost of `keras_normloss.callbacks.NormDynamics` (on in `train` by default): one sample
(two copies of the kernels to the host and their statistics, timed alone on the `none` network),
and that cost spread over its default interval as a fraction of a `none` step.
On JAX (`KERAS_BACKEND=jax`) the steps are XLA-compiled, as Keras compiles them there by default.
The Norm Loss paper claims "lower computational complexity than most weight regularization
methods"; this measures it on a CPU.
"""

import argparse
import json
import os
import statistics
import time

# Not TF_ENABLE_ONEDNN_OPTS=0: on this CPU it halves training speed.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from added_work import extra_work_timer  # noqa: E402
from step_timing import sgd_step_timer  # noqa: E402

from keras_normloss import callbacks, methods, models, norm_dynamics  # noqa: E402
from keras_normloss.optimizers.decoupled import extend_with_normloss  # noqa: E402
from keras_normloss.training import presets  # noqa: E402

PRESET = presets.get("cifar10-resnet110")  # lr 0.1, momentum 0.9, wd 1e-4, λ 1e-3


def build(name, method):
    model = models.get(name, seed=0)
    applied = methods.apply(model, method, presets.default_factor(PRESET, method))
    optimizer = None
    if applied.optimizer_options:
        optimizer = extend_with_normloss(keras.optimizers.SGD)(
            0.1, momentum=0.9, **applied.optimizer_options
        )
    return applied.model, applied, optimizer


def measure(name, method_names, batch_size, rounds, steps, warmup, step_times="all"):
    """Median step times (of every variant, or of none alone with `step_times="none"`) and
    each method's added work, in seconds."""
    built = {m: build(name, m) for m in method_names}
    timers = {
        m: sgd_step_timer(model, batch_size, optimizer=optimizer)
        for m, (model, _, optimizer) in built.items()
    }
    if step_times == "none":
        for m, (model, _, _) in built.items():
            model.optimizer.build(model.trainable_variables)  # what the decoupled update needs
        timers = {"none": timers["none"]}
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
    return (
        {m: statistics.median(t) for m, t in times.items()},
        extra,
        dynamics_sample(built["none"][0]),
    )


def dynamics_sample(model, repeats=11):
    """The median seconds of one NormDynamics sample on `model`: the kernels copied before and
    after a step, and the statistics of the step."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        before = norm_dynamics.kernel_matrices(model)
        norm_dynamics.step_statistics(before, norm_dynamics.kernel_matrices(model), 0.1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet56"], help="registered names")
    parser.add_argument("--methods", nargs="+", default=list(methods.names()))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--step-times",
        choices=["all", "none"],
        default="all",
        help="time the steps of every variant, or of none alone (added work: every method)",
    )
    parser.add_argument("--json", help="also write the medians here (benchmarks/backends.py)")
    args = parser.parse_args(argv)
    method_names = ["none"] + [m for m in args.methods if m != "none"]
    for m in method_names:
        methods.get(m)  # an unknown name fails before anything is built

    print(
        f"keras {keras.__version__}, {_backend_version()}, {os.cpu_count()} CPUs, "
        f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, medians; "
        "cells: step time / none's (added work in ms, timed alone)"
    )
    columns = {}
    for name in args.models:
        step, extra, sample = measure(
            name,
            method_names,
            args.batch_size,
            args.rounds,
            args.steps,
            args.warmup,
            args.step_times,
        )
        columns[name] = step, extra, sample
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
            step, extra, _ = columns[n]
            ratio = f"{step[m] / step['none']:.3f}" if m in step else "—"
            cells.append(f"{ratio} ({1e3 * extra[m]:.2f} ms)")
        print(f"| {m} | " + " | ".join(cells) + " |")
    every = callbacks.DEFAULT_DYNAMICS_EVERY
    print(
        f"| NormDynamics, every {every} steps | "
        + " | ".join(
            f"{100 * columns[n][2] / every / columns[n][0]['none']:.2f} % "
            f"({1e3 * columns[n][2]:.1f} ms a sample)"
            for n in args.models
        )
        + " |"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "backend": _backend_version(),
                    "step_seconds": {n: columns[n][0] for n in args.models},
                    "added_seconds": {n: columns[n][1] for n in args.models},
                    "dynamics_sample_seconds": {n: columns[n][2] for n in args.models},
                },
                f,
                indent=1,
            )


def _backend_version():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return f"jax {jax.__version__}"
    import tensorflow as tf

    return f"tensorflow {tf.__version__}"


if __name__ == "__main__":
    main()
