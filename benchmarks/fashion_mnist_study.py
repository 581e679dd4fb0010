"""The Fashion-MNIST study: each of the Norm Loss paper's claims measured on the full dataset, with
factors chosen on a validation split and compared over paired seeds (issue 16).

    apt-get install dataset-fashion-mnist          # once: the real dataset, no other download
    python benchmarks/fashion_mnist_study.py       # resumable: run it again to go on
    python benchmarks/fashion_mnist_study.py --report-only   # tables and figures from the runs

The `fashion-mnist` preset (see `keras_normloss.training.presets`): the same schedule, epochs and batch
for every method, 10 % of the 60,000 training images held out for validation (the same images
for every run), every epoch tested on the 10,000 test images. In order, into one sweep
directory (`keras_normloss.training.sweep`: a finished run is skipped, an interrupted one resumes):

1. factors: Norm Loss and weight decay at each of `--factors` (>= 4, the same for both), and
   no regularization, on the tuning seeds (`--tune-seeds`, default 0), batch 128;
2. the choice: each method's factor with the lowest mean validation error on the tuning seeds
   (never the test error), written to `choices.json` in the sweep directory (the choice belongs
   to the runs it was made from) and kept from then on;
3. seeds: none, Norm Loss and weight decay at their chosen factors on `--seeds` (>= 5, the same
   seeds for all), batch 128;
4. batch sizes: Norm Loss and weight decay at their chosen factors at `--batches` (lr scaled
   with the batch, the same epochs) on `--batch-seeds`;
5. peers: every other method of `keras_normloss.methods` at its default on `--peer-seeds`.

Writes to `--docs` (default: OUTPUT/report; the repository's recorded results in
docs/results/study/ only when named there, as `python benchmarks/fashion_mnist_study.py --output
runs/fashion-mnist-study --docs docs/results/study`): `choices.json`, a copy of the choice;
`study.csv`, one row per run (phase, method,
factor, seed, batch size, dataset, validation error, final test error, ...); `paired.json`,
the per-seed difference Norm Loss − weight decay (final test error at the chosen factors) with
its 95 % Student-t interval; `table.md` and the figures of `keras_normloss.plotting.grid_plots.plot_grid`
(error against factor and batch, channel norms, seeds) plus `convergence.png` (training
cross-entropy per epoch, Norm Loss against weight decay, mean over seeds).
"""

import argparse
import collections
import csv
import json
import os
import statistics
import sys
import time

from paired_stats import paired_difference

os.environ.setdefault("KERAS_NORMLOSS_TF_LOGS", "hide")  # the command line's quiet start

PRESET = "fashion-mnist"
FACTORS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # four decades, the same for both methods
COMPARED = ("normloss", "weight-decay")
BASE_BATCH = 128
BATCHES = (32, 64, 256, 512)
SEEDS = (0, 1, 2, 3, 4)
STUDY_COLUMNS = (
    "phase",
    "method",
    "factor",
    "timescale_steps",  # methods.norm_theory: above the run's steps the method had not acted
    "timescale_fraction",
    "seed",
    "batch_size",
    "dataset",
    "validation_error",
    "final_test_error",
    "final_train_cross_entropy",
    "epochs",
    "wall_seconds",
    "run",
)


def peers():
    """Every method of the table but none and the two compared ones."""
    from keras_normloss import methods

    return [m for m in methods.names() if m not in ("none", *COMPARED)]


def plan(args, choices=None):
    """The study's sweeps as (phase, keyword arguments of `keras_normloss.training.sweep.sweep`);
    phases 3-4 only once the factors are chosen."""
    groups = [
        ("factors", dict(regularizers=["none", *COMPARED], factors=list(args.factors),
                         seeds=list(args.tune_seeds), batch_sizes=[args.base_batch])),
    ]  # fmt: skip
    if choices is not None:
        for method in ("none", *COMPARED):
            factors = [choices[method]] if method in choices else []
            groups.append(
                ("seeds", dict(regularizers=[method], factors=factors, seeds=list(args.seeds),
                               batch_sizes=[args.base_batch]))
            )  # fmt: skip
            if args.batches and method in COMPARED:  # the claim is about these two
                groups.append(
                    ("batch", dict(regularizers=[method], factors=factors,
                                   seeds=list(args.batch_seeds), batch_sizes=list(args.batches)))
                )  # fmt: skip
    if args.peers:
        groups.append(
            ("peers", dict(regularizers=list(args.peers), factors=[], seeds=list(args.peer_seeds),
                           batch_sizes=[args.base_batch]))
        )  # fmt: skip
    return groups


def planned_runs(args, choices):
    """The number of distinct runs of the whole study (an estimate before the choice)."""
    from keras_normloss.training import sweep

    names = set()
    guess = choices or {m: args.factors[0] for m in COMPARED}
    for _, group in plan(args, guess):
        for method, factor, seed, batch in sweep.grid(
            group["regularizers"], group["factors"] or [None], group["seeds"],
            group["batch_sizes"],
        ):  # fmt: skip
            names.add(sweep.run_name(method, factor, seed, batch or args.base_batch))
    return len(names)


def _finished(output):
    if not os.path.isdir(output):
        return 0
    return sum(os.path.exists(os.path.join(output, d, "results.json")) for d in os.listdir(output))


def _overrides(args):
    """The runs' settings over the preset: the options `train` takes, deterministic always."""
    from keras_normloss.cli import parsers

    return {**parsers.shared_overrides(args), "deterministic": True}


def choose(args, rows):
    """Each compared method's factor, chosen on the validation error of the tuning seeds."""
    from keras_normloss.training import sweep

    tuning = [r for r in rows if int(r["seed"]) in args.tune_seeds]
    return {
        method: sweep.choose_factor(tuning, method, batch_size=args.base_batch)[0]
        for method in COMPARED
    }


def report(args, choices):
    """study.csv, paired.json, table.md and the figures, from the finished runs."""
    from keras_normloss.plotting import grid_plots
    from keras_normloss.training import presets, read_metrics, sweep
    from keras_normloss.training.sweep_summary import at_its_factor

    def preset_default(method):  # the peers run at their defaults
        return presets.default_factor(presets.get(PRESET), method)

    rows = sweep.write_summary(args.output)
    os.makedirs(args.docs, exist_ok=True)
    study_rows = []
    for r in rows:
        factor = None if r["factor"] in (None, "") else float(r["factor"])
        batch, seed = int(r["batch_size"]), int(r["seed"])
        method = r["method"]
        if method not in ("none", *COMPARED):
            phase = "peers"
        elif batch != args.base_batch:
            phase = "batch"
        elif method in COMPARED and (not choices or factor != choices[method]):
            phase = "factors"
        elif not choices and seed in args.tune_seeds:
            phase = "factors"
        else:
            phase = "seeds"  # the chosen factor's runs (its tuning seed included)
        study_rows.append(
            dict(
                phase=phase,
                method=r["method"],
                factor="" if factor is None else f"{factor:g}",
                timescale_steps=r.get("timescale_steps", ""),
                timescale_fraction=r.get("timescale_fraction", ""),
                seed=seed,
                batch_size=batch,
                dataset=r.get("dataset", ""),
                validation_error=r.get("final_validation_error", ""),
                final_test_error=r["final_test_error"],
                final_train_cross_entropy=r.get("final_train_cross_entropy", ""),
                epochs=r.get("epochs", ""),
                wall_seconds=r.get("wall_seconds", ""),
                run=r["run"],
            )
        )
    if choices:
        with open(os.path.join(args.docs, "choices.json"), "w") as f:
            json.dump(choices, f, indent=2)
    path = os.path.join(args.docs, "study.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STUDY_COLUMNS)
        writer.writeheader()
        writer.writerows(study_rows)
    summary = {"choices": choices, "command": " ".join(sys.argv)}
    if choices:
        # Each method's final test error per seed at the base batch and its one factor: the
        # chosen one for the compared methods, the default for the peers.
        at_factor = collections.defaultdict(dict)
        for r in rows:
            method, seed = r["method"], int(r["seed"])
            chosen = at_its_factor(method, r["factor"], choices, preset_default)
            if int(r["batch_size"]) == args.base_batch and chosen:
                if seed in at_factor[method]:  # a peer run at two factors
                    raise ValueError(f"{method} has two runs of seed {seed} to compare")
                at_factor[method][seed] = float(r["final_test_error"])
        normloss = at_factor.pop("normloss", {})
        summary["normloss_minus_weight_decay"] = _paired_or_none(
            normloss, at_factor.get("weight-decay", {})
        )
        # Every other method (none, weight decay, each peer) against Norm Loss, on common seeds.
        summary["minus_normloss"] = {
            method: _paired_or_none(errors, normloss)
            for method, errors in sorted(at_factor.items())
        }
        _convergence_figure(args, rows, choices, read_metrics)
    with open(os.path.join(args.docs, "paired.json"), "w") as f:
        json.dump(summary, f, indent=2)
    chosen = {m: f for m, f in (choices or {}).items() if f is not None}
    grid_plots.plot_grid(args.output, args.docs, base_batch=args.base_batch, factors=chosen)
    return study_rows, summary


def _paired_or_none(a, b):
    """`paired_difference(a, b)`, or None with fewer than two seeds in common (yet)."""
    try:
        return paired_difference(a, b)
    except (ValueError, statistics.StatisticsError):
        return None


def _convergence_figure(args, rows, choices, read_metrics):
    from keras_normloss.plotting.sweep_panels import pyplot
    from keras_normloss.training.sweep_summary import at_its_factor

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for method in ("none", *COMPARED):
        curves = [
            [m["cross_entropy"] for m in read_metrics(os.path.join(args.output, r["run"]))]
            for r in rows
            if r["method"] == method
            and int(r["batch_size"]) == args.base_batch
            and at_its_factor(method, r["factor"], choices)
        ]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = [statistics.fmean(c[e] for c in curves) for e in range(length)]
        factor = "" if method == "none" else f" {choices[method]:g}"
        ax.plot(
            range(1, length + 1), mean, marker="o", label=f"{method}{factor} ({len(curves)} seeds)"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cross-entropy (mean over seeds)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.savefig(os.path.join(args.docs, "convergence.png"), dpi=110)
    plt.close(fig)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/fashion-mnist-study", help="sweep directory")
    parser.add_argument(
        "--docs",
        help="where the tables and figures go (default: OUTPUT/report); the repository's "
        "docs/results/study is written only when named here",
    )
    parser.add_argument("--factors", type=float, nargs="+", default=list(FACTORS))
    parser.add_argument("--tune-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--base-batch", type=int, default=BASE_BATCH)
    parser.add_argument("--batches", type=int, nargs="*", default=list(BATCHES))
    parser.add_argument("--batch-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--peers", nargs="*", default=None, help="default: every other method")
    parser.add_argument("--peer-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true", help="no training")
    from keras_normloss.cli import parsers

    parsers.add_run_options(parser)  # --epochs, --dataset, --model, ... as `train` takes them
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.peers is None:
        args.peers = peers()
    if len(args.factors) < 4:
        print("fashion_mnist_study: note: fewer than 4 factors; the protocol asks for >= 4")
    from keras_normloss import errors
    from keras_normloss.training import sweep

    # A user's study never writes into the repository's recorded results unless told to, nor
    # reads a choice made from other runs: the choice lives with the runs it was made from.
    args.docs = args.docs or os.path.join(args.output, "report")
    choices_path = os.path.join(args.output, "choices.json")
    choices = json.load(open(choices_path)) if os.path.exists(choices_path) else None
    start = time.time()
    if not args.report_only:
        phase_names = ("factors", "choice", "seeds", "batch", "peers")
        for k, name in enumerate(phase_names, start=1):
            total = planned_runs(args, choices)
            print(
                f"== study: phase {k}/{len(phase_names)} ({name}); {_finished(args.output)} of "
                f"{total} runs finished; {time.time() - start:.0f} s in this sitting",
                flush=True,
            )
            if name == "choice":
                if choices is None:
                    rows = sweep.write_summary(args.output)
                    choices = {"none": None, **choose(args, rows)}
                    with open(choices_path, "w") as f:
                        json.dump(choices, f, indent=2)
                print(f"   chosen on validation: {choices}", flush=True)
                continue
            for phase, group in plan(args, choices):
                if phase != name:
                    continue
                try:
                    sweep.sweep(PRESET, args.output, **group, **_overrides(args))
                except (errors.UsageError, sweep.RunError) as error:
                    print(f"fashion_mnist_study: error: {error}", file=sys.stderr)
                    return getattr(error, "exit_status", 2)
    _, summary = report(args, choices)
    paired = summary.get("normloss_minus_weight_decay")
    if paired:
        print(
            f"Norm Loss − weight decay, final test error over {paired['n']} paired seeds: "
            f"{100 * paired['mean']:+.2f} points, 95 % CI [{100 * paired['low']:+.2f}, "
            f"{100 * paired['high']:+.2f}]: {paired['verdict']}"
        )
    print(f"study: {_finished(args.output)} runs; {os.path.join(args.docs, 'study.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
