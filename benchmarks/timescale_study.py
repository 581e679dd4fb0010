"""The second study (issue 27): Norm Loss against weight decay and `none` in the regime the pilot
chose, with factors gridded by timescale, chosen on tuning seeds and evaluated on fresh ones.

    python benchmarks/timescale_study.py --output runs/timescale-study      # resumable
    python benchmarks/timescale_study.py --output runs/timescale-study \\
        --docs docs/results/timescale-study --commit                        # the recorded study
    python benchmarks/timescale_study.py --docs docs/results/timescale-study --report-only

The regime is the one `benchmarks/regime_pilot.py`'s rows qualify (`chosen_regime`: training
error near 0 at the end and weight decay, at its factor chosen on validation, better than `none`
with a 95 % interval that excludes 0; among several, the largest generalization gap; among none,
also the largest gap, and "competitive" is then not testable here). In order, each run a
`keras-normloss train` process recorded to the row (`recorded_runs`: commit, command, machine,
compressed metrics and dynamics; resumable from what is committed):

1. grid: `none`, and Norm Loss and weight decay at the factors whose timescale
   (`keras_normloss.methods.norm_theory`) is each of `FRACTIONS` of the run, on the tuning seeds;
2. choice: each method's grid point with the lowest mean validation error over the tuning seeds,
   written once to `choices.json` and kept (the choice belongs to the runs it was made from);
3. evaluation: `none`, Norm Loss and weight decay at their chosen factors on fresh seeds;
4. batch: `none` and the two at their chosen factors at each of `BATCHES` (the same epochs, the
   learning rate scaled with the batch) on `BATCH_SEEDS`;
5. exploratory (added after the evaluation rows; no verdict): weight decay at its chosen factor
   on the kernels only (`KERNELS_ONLY`), on the evaluation seeds.

`study.md` then states, from `study.csv` and the kept metrics alone: the grid (error against
timescale, each method's spread, the norms and steps it produced), the comparisons over paired
evaluation seeds (95 % intervals, Holm-adjusted p-values, and the TOST against the margin,
`--margin`, fixed before the runs), the batch sizes, convergence and the norm dynamics, with the
figures of `timescale_figures`. The peers are not in this study: at about 5 minutes a run on 2
cores they do not fit its 12 hours beside these 89 runs, and `study.md` says so.

A regime of your own: `--define NAME OPTIONS` (`keras-normloss train` options as one string, as
`regime_pilot.py --define` takes them, whose pilot must have run it). The first start pins the
regime, its options and the margin in DOCS/regime.json; later sittings read them from there.
"""

import argparse
import json
import os
import statistics
import sys

import recorded_runs
import regime_pilot
from paired_stats import MIN_SEEDS, competitive_verdict, holm, paired_difference, tost

os.environ.setdefault("KERAS_NORMLOSS_TF_LOGS", "hide")  # the command line's quiet start

COMPARED = ("normloss", "weight-decay")
# Timescale as a fraction of the run: from a tenth of it to ten runs, the same for both methods.
FRACTIONS = (0.1, 0.3, 1.0, 3.0, 10.0)
TUNING_SEEDS = (100, 101, 102)  # the grid (3 a point) and the choice; never evaluated on
EVALUATION_SEEDS = (200, 201, 202, 203, 204)  # fresh, paired across the three methods
# The equivalence margin of "competitive", in test error, fixed before any of the study's runs
# (after the pilot, which ran `none` and weight decay only): ±0.5 points, 5 % of the pilot's
# `none` test error (about 10 %), the relative margin results protocol §7 names. A margin of
# ±0.3 points (its other example) would need the mean paired difference within about ±0.06
# points for five seeds at a paired spread of 0.25 points: unresolvable by design.
MARGIN = 0.005
NEAR_ZERO = 0.02  # "training error near 0 at the end": the last epoch's mean below 2 %
# The batch phase: the same epochs at every batch, the learning rate scaled with it (the preset's
# `lr_scales_with_batch`, Goyal et al. 2017), so that a factor's timescale stays the same fraction
# of the run (η·steps is constant) and only the batch changes. The regime's own batch (128 in
# the built-in ones: the preset's) is the grid's and the evaluation's, and not run again here.
BATCHES = (32, 64, 256, 512)
BATCH_SEEDS = EVALUATION_SEEDS[:3]
# Added after the evaluation rows were in, as an exploratory arm that gives no verdict: weight
# decay at its chosen factor on the convolution and Dense kernels only, the parameters Norm Loss
# acts on, on the evaluation seeds. The evaluation's weight decay also decays BatchNorm's γ and β
# and the biases (`train`'s default `--weight-decay-on all`, as the references' SGD does), so its
# lead over Norm Loss could come from either part; this arm separates them. Its factor is the one
# chosen for weight decay on every parameter, not tuned again: its timescale, a property of the
# kernels, is the same.
KERNELS_ONLY = "weight-decay-kernels"
# A row's method -> the `train` method and options it runs with (the others run as named).
AS_TRAINED = {KERNELS_ONLY: ("weight-decay", {"weight_decay_on": "kernels"})}
COLUMNS = (
    "phase", "regime", "method", "factor", "fraction", "seed", "batch_size",
    *recorded_runs.RECORDED,
)  # fmt: skip


def chosen_regime(pilot_rows):
    """The pilot's verdict: which regime the study runs in, and whether it can test "competitive".

    Returns:
        A dict: `regime`, `testable` (the regime qualified), and `regimes`, per regime its
        `train_error` and `gap` (none's mean final training error and test − training error),
        the weight-decay `factor` with the lowest mean validation error, and `difference`
        (`paired_difference` of its test error − none's), or `None` before two paired seeds.
    """
    regimes = {}
    for regime in dict.fromkeys(r["regime"] for r in pilot_rows):
        mine = [r for r in pilot_rows if r["regime"] == regime]
        none = [r for r in mine if r["method"] == "none"]
        if not none:
            continue
        train = statistics.fmean(float(r["final_train_error"]) for r in none)
        test = statistics.fmean(float(r["final_test_error"]) for r in none)
        decay = [r for r in mine if r["method"] == "weight-decay"]
        factor = _lowest_mean(decay, "validation_error", key="factor")
        arm = _by_seed([r for r in decay if r["factor"] == factor], "final_test_error")
        base = _by_seed(none, "final_test_error")
        difference = paired_difference(arm, base) if len(set(arm) & set(base)) >= 2 else None
        qualifies = (
            train < NEAR_ZERO
            and difference is not None
            and difference["n"] >= MIN_SEEDS
            and difference["high"] < 0
        )
        regimes[regime] = dict(
            train_error=train, gap=test - train, factor=factor, difference=difference,
            qualifies=qualifies,
        )  # fmt: skip
    if not regimes:
        raise ValueError("the pilot has no finished `none` run yet: run regime_pilot.py first")
    qualified = [r for r in regimes if regimes[r]["qualifies"]]
    pool = qualified or list(regimes)
    regime = max(pool, key=lambda r: regimes[r]["gap"])
    return dict(regime=regime, testable=bool(qualified), regimes=regimes)


def _by_seed(rows, column):
    return {int(r["seed"]): float(r[column]) for r in rows}


def _lowest_mean(rows, column, key):
    """The value of `key` whose rows have the lowest mean `column` (None without rows)."""
    groups = {}
    for r in rows:
        groups.setdefault(r[key], []).append(float(r[column]))
    return min(groups, key=lambda k: statistics.fmean(groups[k])) if groups else None


def base_batch(regime, overrides=None):
    """The batch of the grid and the evaluation: the regime's (the preset's unless it says)."""
    return regime_pilot.regime_config(regime, "none", None, overrides).batch_size


def grid_runs(regime, fractions, seeds, overrides=None):
    """(phase, method, factor, fraction, seed, batch) of the grid, seed by seed; and the run's
    steps."""
    batch = base_batch(regime, overrides)
    factors = {}
    for method in COMPARED:
        factors[method], steps = regime_pilot.factors_at(regime, method, fractions, overrides)
    runs = []
    for seed in seeds:
        runs.append(("grid", "none", None, None, seed, batch))
        for method in COMPARED:
            runs += [
                ("grid", method, f, x, seed, batch) for f, x in zip(factors[method], fractions)
            ]
    return runs, steps


def choose(rows, tuning_seeds):
    """Each compared method's grid point (factor, fraction) with the lowest mean validation error
    over the tuning seeds; `None` while any of its grid runs is missing."""
    grid = [r for r in rows if r["phase"] == "grid"]
    choices = {}
    for method in COMPARED:
        mine = [r for r in grid if r["method"] == method]
        points = dict.fromkeys((r["factor"], r["fraction"]) for r in mine)
        complete = all(
            {int(r["seed"]) for r in mine if (r["factor"], r["fraction"]) == p} >= set(tuning_seeds)
            for p in points
        )
        if not points or not complete:
            return None
        factor = _lowest_mean(mine, "validation_error", key="factor")
        fraction = next(r["fraction"] for r in mine if r["factor"] == factor)
        choices[method] = dict(factor=float(factor), fraction=float(fraction))
    return choices


def evaluation_runs(choices, seeds, batches, phase="evaluation"):
    """`none` and each compared method at its chosen factor, seed by seed (and batch by batch)."""
    runs = []
    for seed in seeds:
        for batch in batches:
            runs.append((phase, "none", None, None, seed, batch))
            for method in COMPARED:
                c = choices[method]
                runs.append((phase, method, c["factor"], c["fraction"], seed, batch))
    return runs


def kernels_only_runs(choices, seeds, batch):
    """The exploratory arm: weight decay at its chosen factor on the kernels only, seed by seed."""
    c = choices["weight-decay"]
    return [("exploratory", KERNELS_ONLY, c["factor"], c["fraction"], s, batch) for s in seeds]


def run_name(phase, regime, method, factor, seed, batch, base):
    """The run's name; `_bBATCH` where the batch is not the regime's (`base`)."""
    name = f"{phase}_{regime_pilot.run_name(regime, method, factor, seed)}"
    return name if batch == base else f"{name}_b{batch}"


def pinned_regime(args, docs):
    """The study's regime and margin: read from DOCS/regime.json once written (with the regime's
    options), so that every sitting runs the same; at the first start, the regime chosen from
    the complete pilot (or `--regime`, or the one `--define`), checked against the options the
    pilot ran it with, and written there with them, the margin (`--margin`) and the pilot's
    verdict. Returns (regime, margin), or None with a message if that cannot be done."""
    from keras_normloss.errors import UsageError

    path = os.path.join(docs, "regime.json")
    pinned = None
    if os.path.exists(path):
        with open(path) as f:
            pinned = json.load(f)
    try:
        if pinned:
            regime_pilot.define_pinned(pinned)
        for name, options in args.define:
            regime_pilot.define(name, options)
    except (ValueError, UsageError, KeyError) as error:
        print(f"study: {error}", file=sys.stderr)
        return None
    if pinned:
        return _check_pinned(args, docs, path, pinned)
    rows = recorded_runs.read_rows(args.pilot)
    try:
        verdict = chosen_regime(rows)
    except ValueError as error:
        print(f"study: {args.pilot}: {error}", file=sys.stderr)
        return None
    only = [name for name, _ in args.define][:1] if len(args.define) == 1 else []
    regime = args.regime or next(iter(only), None) or verdict["regime"]
    seeds = {r["seed"] for r in rows if r["regime"] == regime and r["method"] == "none"}
    if len(seeds) < MIN_SEEDS:
        print(f"study: the pilot has {len(seeds)} seed(s) of {regime}; finish it first "
              f"({MIN_SEEDS} are needed)", file=sys.stderr)  # fmt: skip
        return None
    if regime not in regime_pilot.REGIMES:
        print(f"study: unknown regime {regime}: --define it (as the pilot did)", file=sys.stderr)
        return None
    if regime not in verdict["regimes"] or regime_pilot.ran_with(rows, regime):
        print(f"study: the pilot did not run {regime} as {regime_pilot.REGIMES[regime]!r}",
              file=sys.stderr)  # fmt: skip
        return None
    margin = MARGIN if args.margin is None else args.margin
    record = dict(regime=regime, options=regime_pilot.REGIMES[regime], margin=margin, testable=verdict["regimes"][regime]["qualifies"], pilot=[
        dict(regime=name, **{k: v for k, v in found.items() if k != "difference"},
             difference=None if found["difference"] is None else {
                 k: found["difference"][k] for k in ("n", "mean", "low", "high")})
        for name, found in verdict["regimes"].items()
    ])  # fmt: skip
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
    if args.commit:
        recorded_runs.git_commit([path], "study: the regime, from the pilot's rows", "study")
    return regime, margin


def _check_pinned(args, docs, path, pinned):
    """(regime, margin) of a pinned study, if `args` and the rows agree with them; written back
    with the options and the margin where an older regime.json lacked them."""
    regime, margin = pinned["regime"], pinned.get("margin", MARGIN)
    if args.regime not in (None, regime) or args.margin not in (None, margin):
        print(f"study: {docs} runs in {regime} with the margin ±{100 * margin:g} points, "
              "pinned in regime.json", file=sys.stderr)  # fmt: skip
        return None
    differ = regime_pilot.ran_with(recorded_runs.read_rows(os.path.join(docs, "study.csv")),
                                   regime)  # fmt: skip
    if differ:
        print(f"study: {differ[0]['run']} ran with other options than "
              f"{regime_pilot.REGIMES[regime]!r}", file=sys.stderr)  # fmt: skip
        return None
    if "options" not in pinned or "margin" not in pinned:
        pinned.update(options=regime_pilot.REGIMES[regime], margin=margin)
        with open(path, "w") as f:
            json.dump(pinned, f, indent=1)
        if args.commit:
            recorded_runs.git_commit([path], "study: the regime's options and margin pinned "
                                     "(every row ran with them)", "study")  # fmt: skip
    return regime, margin


def margin_of(docs):
    """The study's equivalence margin, as pinned in DOCS/regime.json (`MARGIN` before)."""
    path = os.path.join(docs, "regime.json")
    if not os.path.exists(path):
        return MARGIN
    with open(path) as f:
        return json.load(f).get("margin", MARGIN)


def run_all(args):
    docs = args.docs or os.path.join(args.output, "report")
    os.makedirs(docs, exist_ok=True)
    table = os.path.join(docs, "study.csv")
    recorded_runs.keep_missing_files(table, args.output, docs, args.commit, "study")
    pinned = pinned_regime(args, docs)
    if pinned is None:
        return 1
    regime, _ = pinned
    written = report(docs)  # where the study stands, before its next run
    if args.commit:
        recorded_runs.git_commit(written, "study: the report of the rows so far", "study")
    overrides = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch",
                 args.steps_per_epoch)) if v is not None}  # fmt: skip
    grid, steps = grid_runs(regime, args.fractions, args.tuning_seeds, overrides)
    status = _run_each(args, docs, table, regime, grid, steps, overrides)
    if status:
        return status
    choices_path = os.path.join(docs, "choices.json")
    if not os.path.exists(choices_path):
        choices = choose(recorded_runs.read_rows(table), args.tuning_seeds)
        if choices is None:
            print("study: the grid is not complete on the tuning seeds; nothing chosen",
                  file=sys.stderr)  # fmt: skip
            return 1
        with open(choices_path, "w") as f:
            json.dump(dict(regime=regime, tuning_seeds=list(args.tuning_seeds), **choices), f,
                      indent=1)  # fmt: skip
        if args.commit:
            recorded_runs.git_commit([choices_path], "study: the factors chosen on validation",
                                     "study")  # fmt: skip
    with open(choices_path) as f:
        choices = json.load(f)
    base = base_batch(regime, overrides)
    runs = evaluation_runs(choices, args.evaluation_seeds, (base,))
    status = _run_each(args, docs, table, regime, runs, steps, overrides)
    batches = [b for b in args.batches if b != base]  # the regime's own batch is the evaluation
    if status:
        return status
    runs = evaluation_runs(choices, args.batch_seeds, batches, "batch")  # [] without batches
    status = _run_each(args, docs, table, regime, runs, steps, overrides)
    if status or not args.kernels_only:
        return status
    runs = kernels_only_runs(choices, args.evaluation_seeds, base)
    return _run_each(args, docs, table, regime, runs, steps, overrides)


def _run_each(args, docs, table, regime, runs, steps, overrides):
    done = {r["run"] for r in recorded_runs.read_rows(table)}
    base = base_batch(regime, overrides)
    lengths = {base: steps}
    where = dict(output=args.output, table=table, columns=COLUMNS, docs=docs,
                 report=lambda: report(docs), commit=args.commit)  # fmt: skip
    for i, (phase, method, factor, fraction, seed, batch) in enumerate(runs, 1):
        name = run_name(phase, regime, method, factor, seed, batch, base)
        if name in done:
            continue
        print(f"[{phase} {i}/{len(runs)}] {name}", flush=True)
        options = overrides if batch == base else {**overrides, "batch_size": batch}
        if batch not in lengths:
            lengths[batch] = regime_pilot.run_length(regime, options)
        trained, extra = AS_TRAINED.get(method, (method, {}))
        arguments = regime_pilot.run_arguments(regime, trained, factor, seed, {**options, **extra})
        fields = dict(
            phase=phase, regime=regime, method=method,
            factor="" if factor is None else f"{factor:.3g}",
            fraction="" if fraction is None else f"{fraction:g}", seed=seed, batch_size=batch,
        )  # fmt: skip
        status = recorded_runs.run_and_record(
            arguments, name, lengths[batch], fields, where, "study"
        )
        if status:
            return status
    return 0


def comparisons(rows, margin=MARGIN):
    """The evaluation's paired comparisons of final test error: Norm Loss − weight decay (with
    the TOST against `MARGIN` and its verdict), weight decay − none and Norm Loss − none, each
    with its Holm-adjusted p over the three; `{}` before two paired evaluation seeds."""
    arms = _arms(rows)
    result = _paired_with_holm(
        arms, [("normloss", "weight-decay"), ("weight-decay", "none"), ("normloss", "none")]
    )
    key = "normloss − weight-decay"
    if key in result:
        equivalence = tost(arms["normloss"], arms["weight-decay"], margin)
        result[key]["tost"] = equivalence
        result[key]["verdict"] = competitive_verdict(result[key], equivalence)
    return result


def kernels_only_comparisons(rows):
    """The exploratory arm against the evaluation's, paired over the seeds they share: Norm Loss
    − it, it − weight decay (on every parameter) and it − none, each with its Holm-adjusted p
    over these three (a family of its own: the evaluation's verdicts do not change); `{}`
    before two paired seeds."""
    arms = _arms(rows)
    return _paired_with_holm(
        arms, [("normloss", KERNELS_ONLY), (KERNELS_ONLY, "weight-decay"), (KERNELS_ONLY, "none")]
    )


def _arms(rows):
    """{method: {seed: final test error}} of the evaluation's arms and the exploratory one."""
    arms = {m: {} for m in ("none", *COMPARED, KERNELS_ONLY)}
    for r in rows:
        if r["phase"] in ("evaluation", "exploratory") and r["method"] in arms:
            arms[r["method"]][int(r["seed"])] = float(r["final_test_error"])
    return arms


def _paired_with_holm(arms, pairs):
    result = {}
    for first, second in pairs:
        if len(set(arms[first]) & set(arms[second])) >= 2:
            result[f"{first} − {second}"] = paired_difference(arms[first], arms[second])
    for d, p in zip(result.values(), holm([d["p"] for d in result.values()])):
        d["p_holm"] = p
    return result


def report(docs):
    """study.md and the figures, from study.csv and the kept per-run files alone; returns the
    paths written."""
    import timescale_report

    return timescale_report.write(docs, recorded_runs.read_rows(os.path.join(docs, "study.csv")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="the runs' directory (resumable)")
    parser.add_argument("--docs", help="where study.csv, study.md, per-run/ and the figures go")
    parser.add_argument("--pilot", default=os.path.join("docs", "results", "pilot", "pilot.csv"),
                        help="the pilot's rows, which choose the regime")  # fmt: skip
    parser.add_argument("--regime", help="run in this regime instead of the pilot's choice")
    parser.add_argument("--margin", type=float, help="the equivalence margin of 'competitive' "
                        f"in test error (default {MARGIN}: ±0.5 points), pinned at the first "
                        "start: fix it before the runs")  # fmt: skip
    parser.add_argument("--define", nargs=2, action="append", default=[],
                        metavar=("NAME", "OPTIONS"), help="a regime of your own, as "
                        "regime_pilot.py --define takes it (pinned in regime.json)")  # fmt: skip
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--tuning-seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    parser.add_argument("--evaluation-seeds", type=int, nargs="+", default=list(EVALUATION_SEEDS))
    parser.add_argument("--batches", type=int, nargs="*", default=list(BATCHES),
                        help="the batch phase's batch sizes (none: no batch phase)")  # fmt: skip
    parser.add_argument("--batch-seeds", type=int, nargs="+", default=list(BATCH_SEEDS))
    parser.add_argument("--no-kernels-only", dest="kernels_only", action="store_false",
                        help="skip the exploratory arm (weight decay on the kernels only)")  # fmt: skip
    parser.add_argument("--epochs", type=int, help="the regime's epochs (a smoke run's)")
    parser.add_argument("--steps-per-epoch", type=int, help="the regime's (a smoke run's)")
    parser.add_argument("--commit", action="store_true", help="commit each finished run's files")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if set(args.tuning_seeds) & set(args.evaluation_seeds + args.batch_seeds):
        parser.error("the tuning seeds must not be evaluated on (protocol §7)")
    if args.report_only:
        if not args.docs:
            parser.error("--report-only needs --docs")
        report(args.docs)
        return 0
    if not args.output:
        parser.error("--output is required (the runs' directory)")
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
