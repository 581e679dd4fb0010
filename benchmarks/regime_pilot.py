"""The regime pilot of the second study (issue 27; protocol §6): `none` and weight decay over
paired seeds in each candidate regime, before any other method runs. A regime can test a
regularizer only if the runs overfit (training error near 0 at the end) and weight decay, at a
factor whose timescale lies within the run, beats `none` with a 95 % interval that excludes 0.

    python benchmarks/regime_pilot.py --output runs/pilot                  # resumable
    python benchmarks/regime_pilot.py --output runs/pilot --docs docs/results/pilot --commit
    python benchmarks/regime_pilot.py --output runs/my-pilot --define r20-cropflip \
        "--model resnet20 --augment crop-flip --train-subset 5000 --epochs 30 --lr-schedule cosine"

A regime is `keras-normloss train` options over the `fashion-mnist-small` preset (`REGIMES`, or
your own with `--define NAME OPTIONS`, checked as `train` checks them; `--preset` in OPTIONS
names another preset). Each run is `keras-normloss train` in a process of its own; the built-in
regimes use the Fashion-MNIST images shipped with the package (no download). Weight decay's
factors are set by their timescale (coupled SGD: (1 − μ)/(η̄·λ) steps at the schedule's mean
rate η̄, `keras_normloss.methods.norm_theory`) as a fraction of the run (`--fractions`). The runs
go seed by seed, so that every regime has paired seeds early.

Writes to `--docs` (default OUTPUT/report; the repository's record only when named there):
`pilot.csv`, one row per finished run with the code's commit, the exact command and the
machine; `per-run/NAME/metrics.csv.gz` and `dynamics.csv.gz` (not `runs/`, which .gitignore
keeps out of the repository), each run's per-epoch metrics and norm
dynamics; `pilot.md`, per regime the final training and test errors and the paired difference
weight decay − none with its 95 % t interval. With `--commit`, each finished run's files are
committed at once (`git commit -- PATHS`: nothing else staged is taken), so that a later sitting
on a new machine resumes from what is committed: a run with a row in `pilot.csv` is not run again.
"""

import argparse
import functools
import json
import os
import re
import shlex
import statistics
import sys

import recorded_runs
from paired_stats import paired_difference

os.environ.setdefault("KERAS_NORMLOSS_TF_LOGS", "hide")  # the command line's quiet start

PRESET = "fashion-mnist-small"  # a regime may name another: its options come after this one
# Each regime: `keras-normloss train` options over the preset, as a user types them. Both are
# overfit-prone on 2 cores: no augmentation on the 13,500 shipped training images (a first
# calibration: training error 0.4 %, test 10.0 % after 20 epochs), and crop-and-flip on a fixed
# 3,000 of them for longer. `--define NAME OPTIONS` adds one for a run of this script.
REGIMES = {
    "noaug-13500": "--model resnet8 --augment none --epochs 20 --lr-schedule cosine "
    "--warmup-epochs 1",
    "cropflip-3000": "--model resnet8 --augment crop-flip --train-subset 3000 --epochs 60 "
    "--lr-schedule cosine --warmup-epochs 1",
}
# What the pilot and the study set for each run themselves; a regime cannot (`train` option
# destinations, so that abbreviations such as `--se` for `--seed` are caught too).
SET_PER_RUN = ("method", "factor", "seed")
PINNED = "regimes.json"  # DOCS/regimes.json: the options of every regime the pilot ran there
FRACTIONS = (0.1, 0.3)  # weight decay's timescale as a fraction of the run
SEEDS = (0, 1, 2)
COLUMNS = ("regime", "method", "factor", "seed", *recorded_runs.RECORDED)


def _option(name, value):
    return [f"--{name.replace('_', '-')}", str(value)]


def define(name, options):
    """Adds the regime NAME: `options`, `keras-normloss train` options as one string (the
    preset's settings apply where they are silent, `--preset` names another). The same options
    again (however spaced) are accepted.

    Raises:
        ValueError: a name that cannot be part of a run's name, a name already defined
            otherwise, an option the pilot and the study set for each run (`SET_PER_RUN`, also
            abbreviated), `--help`, or a regime with no validation split (factors are chosen
            on it).
        keras_normloss.errors.UsageError: options `train` would refuse (checked as it does, for
            `none`, weight decay and Norm Loss).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", name):
        raise ValueError(f"regime name {name!r}: letters, digits, '.' and '-' only (it is part "
                         "of each run's name, whose parts '_' separates)")  # fmt: skip
    if name in REGIMES:
        if shlex.split(REGIMES[name]) == shlex.split(options):
            return
        raise ValueError(f"regime {name!r} is already {REGIMES[name]!r}; choose another name")
    _check_options(name, options)
    REGIMES[name] = options
    try:
        for method, factor in (("none", None), ("weight-decay", 1e-3), ("normloss", 1e-3)):
            config = regime_config(name, method, factor)
        if not config.validation_split:
            raise ValueError(f"regime {name!r} has no validation split, on which the factors "
                             "are chosen: add --validation-split")  # fmt: skip
    except BaseException:
        del REGIMES[name]
        raise


def _check_options(name, options):
    """Refuses options that set what each run sets, read as `train` reads them (argparse takes
    `--se 5` for `--seed 5`: the last of a repeated option wins, so it would replace every
    run's seed), and `--help`."""
    from keras_normloss import train

    parser = train.build_parser()
    unset = object()
    parser.set_defaults(**dict.fromkeys(SET_PER_RUN, unset))
    try:
        args = parser.parse_args(["--preset", PRESET, "--output", "unused", *shlex.split(options)])
    except SystemExit:  # --help (or an abbreviation of it) printed the help and exited
        raise ValueError(f"regime {name!r}: its options ask for help, not a run") from None
    fixed = [d for d in SET_PER_RUN if getattr(args, d) is not unset]
    if args.output != "unused":
        fixed.append("output")
    if fixed:
        raise ValueError(f"regime {name!r}: {', '.join('--' + d for d in fixed)} is set for "
                         "each run, not by a regime")  # fmt: skip


def define_pinned(pinned):
    """Defines the regime a study's regime.json (`pinned`, its dict) names, with the options it
    keeps (older files name a built-in regime only: its options as defined now); returns its
    name."""
    define(pinned["regime"], pinned.get("options") or REGIMES[pinned["regime"]])
    return pinned["regime"]


def ran_with(rows, regime):
    """The rows of `regime` whose command does not hold the regime's options as now defined
    (`[]`: every row ran with them)."""
    words = shlex.split(REGIMES[regime])
    differ = []
    for row in rows:
        if row["regime"] != regime:
            continue
        command = shlex.split(row["command"])
        if not any(command[i : i + len(words)] == words for i in range(len(command))):
            differ.append(row)
    return differ


def pinned_regimes(docs):
    """Defines the regimes DOCS/regimes.json pins (each with the options the pilot ran it with)
    and returns their names; `[]` without the file."""
    path = os.path.join(docs, PINNED)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        pinned = json.load(f)
    for name, options in pinned.items():
        define(name, options)
    return list(pinned)


def pin_regimes(docs, regimes):
    """Writes DOCS/regimes.json with `regimes` added to what it pins; returns its path."""
    path = os.path.join(docs, PINNED)
    pinned = {}
    if os.path.exists(path):
        with open(path) as f:
            pinned = json.load(f)
    pinned.update({r: REGIMES[r] for r in regimes})
    with open(path, "w") as f:
        json.dump(pinned, f, indent=1)
    return path


def run_arguments(regime, method, factor, seed, overrides=None):
    """The `keras-normloss train` arguments of one run, without `--output`: the regime's options,
    then `overrides` (a batch size, a smoke run's epochs and steps: the last of a repeated option
    is the one `train` takes)."""
    args = ["--preset", PRESET, "--method", method, "--seed", str(seed)]
    args += shlex.split(REGIMES[regime])
    for name, value in (overrides or {}).items():
        args += _option(name, value)
    if factor is not None:
        args += ["--factor", f"{factor:.3g}"]
    return args


def regime_config(regime, method, factor, overrides=None):
    """The `RunConfig` one run of the regime trains with, from its arguments read by `train`'s
    own parser (a bad option exits with `train`'s message and status 2)."""
    from keras_normloss import train

    arguments = run_arguments(regime, method, factor, 0, overrides) + ["--output", "unused"]
    args = train.build_parser().parse_args(arguments)
    return train.make_config(
        args.preset, "unused", method=args.method, factor=args.factor,
        batch_size=args.batch_size, **train.shared_overrides(args),
    )  # fmt: skip


def run_name(regime, method, factor, seed):
    return f"{regime}_{method}" + (f"_f{factor:.3g}" if factor is not None else "") + f"_s{seed}"


def _config_and_steps_per_epoch(regime, method, factor, overrides):
    config = regime_config(regime, method, factor, overrides)
    return config, config.steps_per_epoch or _steps_per_epoch(
        config.dataset, config.batch_size, config.validation_split, config.train_subset
    )


@functools.lru_cache
def _steps_per_epoch(dataset, batch_size, validation_split, train_subset):
    """Loaded once per split: a study asks for each method's factors and each batch's length."""
    from keras_normloss import data

    info = data.load(
        dataset, batch_size, validation_split=validation_split, train_subset=train_subset
    ).info
    return info.steps_per_epoch(batch_size)


def run_length(regime, overrides=None):
    """The regime's run in steps (with `overrides`: a batch size, a smoke run's epochs)."""
    config, steps_per_epoch = _config_and_steps_per_epoch(regime, "none", None, overrides)
    return config.epochs * steps_per_epoch


def factors_at(regime, method, fractions, overrides=None):
    """`method`'s factors whose timescale (`keras_normloss.methods.norm_theory`, at the schedule's
    mean rate) is each fraction of the regime's run, to 2 significant digits, and the run's
    length in steps."""
    from keras_normloss.training.build import run_timescale

    config, steps_per_epoch = _config_and_steps_per_epoch(regime, method, 1.0, overrides)
    record = run_timescale(config, steps_per_epoch)
    # The timescale is proportional to 1/λ: λ = T(λ=1) / (fraction · run).
    total = record["total_steps"]
    return [float(f"{record['steps'] / (f * total):.2g}") for f in fractions], total


def plan(regimes, fractions, seeds, overrides=None):
    """(regime, method, factor, seed) of every run, seed by seed, and each regime's steps."""
    factors, steps = {}, {}
    for regime in regimes:
        factors[regime], steps[regime] = factors_at(regime, "weight-decay", fractions, overrides)
    runs = []
    for seed in seeds:
        for regime in regimes:
            runs.append((regime, "none", None, seed))
            runs += [(regime, "weight-decay", f, seed) for f in factors[regime]]
    return runs, steps


def run_all(args):
    docs = args.docs or os.path.join(args.output, "report")
    os.makedirs(docs, exist_ok=True)
    table = os.path.join(docs, "pilot.csv")
    recorded_runs.keep_missing_files(table, args.output, docs, args.commit, "pilot")
    rows = recorded_runs.read_rows(table)
    for regime in args.regimes:
        differ = ran_with(rows, regime)
        if differ:
            print(f"pilot: {differ[0]['run']} ran {regime} with other options than "
                  f"{REGIMES[regime]!r}: name the new regime otherwise", file=sys.stderr)  # fmt: skip
            return 2
    pinned = pin_regimes(docs, args.regimes)
    if args.commit:
        recorded_runs.git_commit([pinned], "pilot: the regimes' options", "pilot")
    done = {r["run"] for r in rows}
    overrides = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch",
                 args.steps_per_epoch)) if v is not None}  # fmt: skip
    runs, steps = plan(args.regimes, args.fractions, args.seeds, overrides)
    where = dict(output=args.output, table=table, columns=COLUMNS, docs=docs,
                 report=lambda: report(docs), commit=args.commit)  # fmt: skip
    for i, (regime, method, factor, seed) in enumerate(runs, 1):
        name = run_name(regime, method, factor, seed)
        if name in done:
            continue
        print(f"[{i}/{len(runs)}] {name}", flush=True)
        arguments = run_arguments(regime, method, factor, seed, overrides)
        fields = dict(regime=regime, method=method, seed=seed,
                      factor="" if factor is None else f"{factor:.3g}")  # fmt: skip
        status = recorded_runs.run_and_record(
            arguments, name, steps[regime], fields, where, "pilot"
        )
        if status:
            return status
    return 0


def report(docs):
    """pilot.md from pilot.csv alone."""
    rows = recorded_runs.read_rows(os.path.join(docs, "pilot.csv"))
    lines = [
        "# Regime pilot: none and weight decay over paired seeds",
        "",
        "Written by `benchmarks/regime_pilot.py` from `pilot.csv` (each row: the run's commit, "
        "command and machine). Errors in %; training error is the last epoch's running mean.",
        "",
    ]
    for regime in dict.fromkeys(r["regime"] for r in rows):
        mine = [r for r in rows if r["regime"] == regime]
        lines += [f"## {regime}", "", f"    {mine[0]['command']}", ""]
        lines += ["| method | factor | timescale (x run) | seeds | train error | test error |"]
        lines += ["|---|---|---|---|---|---|"]
        arms = dict.fromkeys((r["method"], r["factor"]) for r in mine)
        none = {int(r["seed"]): float(r["final_test_error"]) for r in mine if r["method"] == "none"}
        for method, factor in arms:
            arm = [r for r in mine if (r["method"], r["factor"]) == (method, factor)]
            fraction = arm[0]["timescale_fraction"]
            lines.append(
                f"| {method} | {factor or '-'} | {float(fraction):.2g} | "
                f"{', '.join(r['seed'] for r in arm)} | "
                f"{_mean(arm, 'final_train_error')} | {_mean(arm, 'final_test_error')} |"
                if fraction
                else f"| {method} | - | - | {', '.join(r['seed'] for r in arm)} | "
                f"{_mean(arm, 'final_train_error')} | {_mean(arm, 'final_test_error')} |"
            )
        lines.append("")
        for method, factor in arms:
            if method == "none":
                continue
            arm = {int(r["seed"]): float(r["final_test_error"]) for r in mine
                   if (r["method"], r["factor"]) == (method, factor)}  # fmt: skip
            if len(set(arm) & set(none)) < 2:
                lines.append(f"- {method} {factor} − none: fewer than 2 paired seeds yet.")
                continue
            d = paired_difference(arm, none)
            lines.append(
                f"- {method} {factor} − none (test error, {d['n']} paired seeds): "
                f"{100 * d['mean']:+.2f} points, 95 % interval [{100 * d['low']:+.2f}, "
                f"{100 * d['high']:+.2f}]: "
                + ("weight decay better" if d["high"] < 0 else "not shown")
            )
        lines.append("")
    path = os.path.join(docs, "pilot.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return [path]


def _mean(rows, key):
    values = [100 * float(r[key]) for r in rows]
    return f"{statistics.fmean(values):.2f}" + (
        f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="the runs' directory (resumable)")
    parser.add_argument("--docs", help="where pilot.csv, pilot.md and runs/ go")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--regimes", nargs="+", metavar="REGIME",
                        help=f"of {', '.join(REGIMES)} and those defined (default: the defined "
                        "ones if any, otherwise all)")  # fmt: skip
    parser.add_argument("--define", nargs=2, action="append", default=[],
                        metavar=("NAME", "OPTIONS"), help="a regime of your own: `keras-normloss "
                        "train` options as one string, e.g. --define r20-cropflip '--model "
                        "resnet20 --augment crop-flip --epochs 30 --lr-schedule cosine'")  # fmt: skip
    parser.add_argument("--epochs", type=int, help="every regime's epochs (a smoke run's)")
    parser.add_argument("--steps-per-epoch", type=int, help="every regime's (a smoke run's)")
    parser.add_argument("--commit", action="store_true", help="commit each finished run's files")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    docs = args.docs or os.path.join(args.output, "report")
    if args.report_only:
        report(docs)
        return 0
    # The regimes this pilot ran, as it ran them, then the new definitions.
    pinned = define_all(parser, lambda: pinned_regimes(docs))
    define_all(parser, lambda: [define(name, options) for name, options in args.define])
    defined = [name for name, _ in args.define]
    args.regimes = known(parser, args.regimes or defined or pinned or list(REGIMES))
    return run_all(args)


def define_all(parser, defining):
    """`defining()`'s result, a bad definition being `parser.error`."""
    from keras_normloss.errors import UsageError

    try:
        return defining()
    except (ValueError, UsageError) as error:
        parser.error(str(error))


def known(parser, regimes):
    """`regimes`, each defined (else `parser.error`)."""
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown:
        parser.error(f"unknown regime {', '.join(unknown)}; known: {', '.join(REGIMES)} (or "
                     "--define one)")  # fmt: skip
    return regimes


if __name__ == "__main__":
    sys.exit(main())
