"""TensorFlow against JAX on this machine, side by side: step time of the papers' CIFAR ResNets
and every method's added work, one table.

    python benchmarks/backends.py                          # ResNet-20 and ResNet-56, batch 128
    python benchmarks/backends.py --models resnet20 --methods none normloss weight-decay

Runs `benchmarks/overhead.py` once per backend (a backend is fixed when Keras is imported, so
each runs in its own process; `--backends` sets the order), with the same models, methods, batch
and rounds, and prints one table: per model, each backend's step time with no method (XLA on
JAX, as Keras compiles there by default; TensorFlow as `fit` runs it on a CPU by default), then
per method the work it adds, timed alone, in ms (and its step time over none's on the same
backend with `--step-times all`, which compiles and times every variant's step: far longer). The backends run one after the other, not interleaved: run it on a quiet machine.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(backend, args, scratch):
    """One backend's medians, from overhead.py in a subprocess (`KERAS_BACKEND=backend`)."""
    out = os.path.join(scratch, f"{backend}.json")
    command = [sys.executable, os.path.join(HERE, "overhead.py"), "--json", out]
    command += ["--models", *args.models, "--batch-size", str(args.batch_size)]
    command += ["--rounds", str(args.rounds), "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), "--step-times", args.step_times]
    if args.methods:
        command += ["--methods", *args.methods]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    print(f"== {backend}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, env=env, check=True)
    with open(out) as f:
        return json.load(f)


def table(results, models):
    """The markdown table: a column per (model, backend)."""
    backends = list(results)
    header = [f"{m}, {results[b]['backend']}" for m in models for b in backends]
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    cells = [f"{results[b]['step_seconds'][m]['none']:.3f}" for m in models for b in backends]
    lines.append("| none, s/step | " + " | ".join(cells) + " |")
    methods = [k for k in results[backends[0]]["added_seconds"][models[0]] if k != "none"]
    for method in methods:
        cells = []
        for m in models:
            for b in backends:
                step = results[b]["step_seconds"][m]
                added = results[b]["added_seconds"][m][method]
                ratio = f"{step[method] / step['none']:.3f}" if method in step else "—"
                cells.append(f"{ratio} ({1e3 * added:.2f} ms)")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    ratio = [
        f"{m}: JAX / TensorFlow = "
        f"{results['jax']['step_seconds'][m]['none'] / results['tensorflow']['step_seconds'][m]['none']:.2f}"
        for m in models
        if {"jax", "tensorflow"} <= set(results)
    ]
    return "\n".join(lines + ([""] + ratio if ratio else []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--methods", nargs="+", help="default: every method of the table")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--step-times",
        choices=["all", "none"],
        default="none",
        help="time every variant's step, or none's alone (default; every method's added work "
        "is timed either way)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        results = {b: measure(b, args, scratch) for b in args.backends}
    print()
    print(
        f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, medians; cells: "
        "step time / none's on the same backend (— with --step-times none) and, in brackets, the "
        "work the method adds, timed alone"
    )
    print(table(results, args.models))


if __name__ == "__main__":
    main()
