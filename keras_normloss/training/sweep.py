"""A grid of runs: methods x factors x seeds x batch sizes.

    keras-normloss sweep --preset quick --dataset synthetic --epochs 2 \\
        --method normloss weight-decay --factor 1e-4 1e-3 1e-2 --seed 0 1 \\
        --output runs/sweep

Each run is an ordinary run directory under the sweep directory, named after
its settings (e.g. `normloss_f0.001_s0_b128`). The sweep is resumable: a
finished run is not run again and an interrupted one resumes from its
checkpoint. `summary.csv` gets one row per finished run and is rewritten
after each run. `choose_factor` picks a method's factor on the validation
error (`--validation-split`), never on the test error. `none` and `wrs` take
no factor, so they run once per seed and batch size. A sweep directory holds
only its runs and summary.csv: it is never a run directory, and `train`
refuses it.
"""

import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
import threading

from keras_normloss import cli, errors
from keras_normloss.training.sweep_summary import (  # noqa: F401  (sweep.write_summary, ... as before)
    SUMMARY_COLUMNS,
    choose_factor,
    format_table,
    format_timescale,
    write_summary,
)


def grid(regularizers, factors, seeds, batch_sizes):
    """The runs of a sweep as (method, factor or None, seed, batch size).

    Methods without a factor (`keras_normloss.methods`) run once per seed and
    batch size."""
    from keras_normloss import methods

    runs = []
    for regularizer, batch_size, seed in itertools.product(regularizers, batch_sizes, seeds):
        for factor in factors if methods.get(regularizer).takes_factor else [None]:
            runs.append((regularizer, factor, seed, batch_size))
    return runs


def run_name(regularizer, factor, seed, batch_size):
    factor_part = "" if factor is None else f"_f{factor:g}"
    return f"{regularizer}{factor_part}_s{seed}_b{batch_size}"


def sweep(preset, output, *, regularizers, factors, seeds, batch_sizes=(None,), **overrides):
    """Runs a grid of runs (see the module docstring) and writes summary.csv.

    Args:
        preset: a preset name.
        output: the sweep directory.
        regularizers, factors, seeds, batch_sizes: the grid's axes; a
            `None` batch size means the preset's.
        **overrides: passed to `keras_normloss.train.make_config` for every
            run (`dataset`, `epochs`, `steps_per_epoch`, ...).

    Returns:
        The rows of summary.csv.

    Raises:
        keras_normloss.errors.UsageError: for bad settings, or a run directory
            that holds another run (checked before anything runs).
        RunError: if a run fails or is stopped by SIGTERM or SIGINT (passed
            on to the running run, which saves a checkpoint); started again,
            the sweep resumes there.
        SweepStopped: a `RunError` for SIGTERM or SIGINT that came as a run was ending, too
            late to stop it: that run finished, and no other starts.
        RunsDiverged: after every run, if some diverged (their directories
            hold diverged.json); started again, the sweep skips them.

    Example:

    ```python
    rows = sweep("quick", "runs/sweep", regularizers=["normloss", "weight-decay"],
                 factors=[1e-4, 1e-3, 1e-2], seeds=[0, 1, 2])
    ```
    """
    from keras_normloss import methods, train

    for regularizer in regularizers:
        if regularizer not in methods.METHODS:
            raise errors.UsageError(
                f"unknown method {regularizer!r}; expected one of {', '.join(methods.names())}"
            )
    # None in `factors` is each method's preset default, not a factor given.
    given = [f for f in factors if f is not None]
    if given and not any(methods.get(r).takes_factor for r in regularizers):
        # As `train` does: a factor that would be ignored is a mistake in the command.
        raise errors.UsageError(f"--factor does not apply to --method {' '.join(regularizers)}")
    for seed in seeds:
        if not (isinstance(seed, int) and 0 <= seed < 2**32):
            raise errors.UsageError(f"expected seeds from 0 to {2**32 - 1}, got {seed}")
    check_sweep_dir(output)
    if not factors and any(methods.get(r).takes_factor for r in regularizers):
        factors = [None]  # each regularizer's preset default
    runs = grid(regularizers, factors, seeds, batch_sizes)
    configs = []
    for regularizer, factor, seed, batch_size in runs:
        config = train.make_config(
            preset,
            "",
            regularizer=regularizer,
            factor=factor,
            seed=seed,
            batch_size=batch_size,
            **overrides,
        )
        name = run_name(regularizer, config.factor, seed, config.batch_size)
        config.output = os.path.join(output, name)
        train.check_run_dir(config)  # a clash is reported before anything runs
        configs.append(config)
    os.makedirs(output, exist_ok=True)
    from keras_normloss.training.run_directory import DIVERGED_FILE

    # Each run in a fresh process: TensorFlow never returns GPU memory to the
    # system within a process, and a second MirroredStrategy with
    # synchronized BatchNormalization in one process fails ("Shape mismatch
    # in the collective instance", TF 2.21).
    spawn = multiprocessing.get_context("spawn")
    diverged = []
    for i, config in enumerate(configs, start=1):
        name = os.path.basename(config.output)
        record = os.path.join(config.output, DIVERGED_FILE)
        if train.check_run_dir(config) == "finished":
            print(f"[{i}/{len(configs)}] {name}: finished already", flush=True)
            continue
        if os.path.exists(record):
            # A diverged run is an outcome of the grid (a factor too large), not a fault to
            # stop at: running it again would diverge again.
            print(f"[{i}/{len(configs)}] {name}: diverged in an earlier attempt ({record})")
            diverged.append(name)
            continue
        print(f"[{i}/{len(configs)}] {name}", flush=True)
        process = spawn.Process(target=_run_one, args=(config, os.getpid()))
        with _forward_signals(process) as received:  # also while the process starts
            with _signals_held_for_the_child():
                process.start()
            if received and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)  # it came before there was a run to pass it to
            process.join()
        if received and process.exitcode != 0:
            # Stopped as asked, whatever the run made of it (a run still starting ends at
            # SIGTERM's default action, exit status -15): the sweep's own signal's status.
            write_summary(output)
            raise RunError(config.output, 128 + received[0])
        if process.exitcode == 1 and os.path.exists(record):
            print(f"[{i}/{len(configs)}] {name}: diverged; the sweep goes on", flush=True)
            diverged.append(name)
        elif process.exitcode != 0:
            write_summary(output)
            raise RunError(config.output, process.exitcode)
        write_summary(output)
        if received:
            # The signal came as the run was ending (its last step, its model being saved):
            # the run is whole, and the sweep stops before the next, as asked.
            raise SweepStopped(config.output, received[0])
    if diverged:
        raise RunsDiverged(diverged, output)
    return write_summary(output)


class RunsDiverged(RuntimeError):
    """Every run of the sweep ran, and some diverged (exit status 1); the others are in
    summary.csv."""

    exit_status = 1

    def __init__(self, names, output):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        runs = "1 run" if len(names) == 1 else f"{len(names)} runs"
        super().__init__(
            f"{runs} diverged ({shown}; each one's diverged.json says where) and {'is' if len(names) == 1 else 'are'} "
            f"not in {os.path.join(output, 'summary.csv')}; rerun them with a smaller --lr or "
            "--factor in a new --output"
        )


class RunError(RuntimeError):
    """A run of the sweep did not finish; `exit_status` is the sweep's (the run's, or 1)."""

    def __init__(self, run_dir, exitcode):
        super().__init__(self._message(run_dir, exitcode))
        self.run_dir = run_dir
        self.exit_status = exitcode if exitcode == 2 or exitcode in STOPPED_BY else 1

    @staticmethod
    def _message(run_dir, exitcode):
        if exitcode in STOPPED_BY:
            what = f"was stopped by {STOPPED_BY[exitcode]} (its checkpoint, if any, is kept)"
        else:
            what = f"failed (exit status {exitcode})"
        return (
            f"run {run_dir} {what}; the sweep stops here and resumes from this run when "
            "started again"
        )


STOPPED_BY = {128 + signal.SIGTERM: "SIGTERM", 128 + signal.SIGINT: "SIGINT (Ctrl-C)"}


class SweepStopped(RunError):
    """SIGTERM or SIGINT came while a run was ending, too late to stop it: the run finished,
    and the sweep stops before the next one (exit status 143 or 130)."""

    def __init__(self, run_dir, signum):
        super().__init__(run_dir, 128 + signum)

    @staticmethod
    def _message(run_dir, exitcode):
        return (
            f"stopped by {STOPPED_BY[exitcode]} as run {run_dir} was ending (it finished "
            "whole); started again, the sweep goes on with the next run"
        )


@contextlib.contextmanager
def _forward_signals(process):
    """Passes SIGTERM and SIGINT on to the running run as SIGTERM, which saves a checkpoint
    and stops it; the sweep then stops with its own signal's status (143 or 130). (Ctrl-C in
    a terminal reaches both processes; the run counts it once.) SIGTERM, because it also stops
    a run that is still starting (Python's default action: the process ends, no traceback),
    where a forwarded SIGINT gave a 30-frame KeyboardInterrupt traceback and exit status 1.
    Yields the list of signals received: one that came too late to stop the run (after its
    training) must still stop the sweep."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def forward(signum, frame):
        received.append(signum)
        if process.pid is not None and process.exitcode is None:
            os.kill(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_held_for_the_child():
    """A process started in this block begins with SIGINT and SIGTERM blocked (the signal mask
    survives exec): one that comes while it starts Python waits, instead of a KeyboardInterrupt
    traceback or SIGTERM's silent end, until `_run_one` has its handlers. Here too they wait,
    and are handled (forwarded) once the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def check_sweep_dir(output):
    """Raises UsageError unless `output` can hold a sweep: a new or empty directory, or one
    holding a sweep (summary.csv, run directories); never a run directory or other files."""
    if not output:
        raise errors.UsageError("--output is empty; name the sweep directory")
    if os.path.exists(output) and not os.path.isdir(output):
        raise errors.UsageError(f"--output {output} is a file, not a directory; choose a directory")
    if not os.path.isdir(output):
        return
    if os.path.exists(os.path.join(output, "config.json")):
        raise errors.UsageError(
            f"{output} is a run directory of `keras-normloss train`, not a sweep; choose a new "
            "--output"
        )
    # choices.json: the factors a study (benchmarks/fashion_mnist_study.py) chose from these runs.
    others = [
        name
        for name in os.listdir(output)
        if name not in ("summary.csv", "summary.csv.tmp", "choices.json")
        and not os.path.isdir(os.path.join(output, name))
    ]
    if others:
        raise errors.UsageError(
            f"{output} holds files that are not a sweep's ({others[0]}, ...); choose a new --output"
        )


def _die_with(parent):
    """Asks the kernel to send this process SIGTERM when the process that started it ends
    (Linux's PR_SET_PDEATHSIG): a sweep killed with -9 once left its run training, and the
    sweep started again then trained the same run beside it. SIGTERM, not SIGKILL: the run
    saves a checkpoint and stops. Elsewhere nothing is done (the run directory's lock still
    refuses a second process)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _run_one(config, parent=None):
    from keras_normloss import startup

    # A spawned child imports TensorFlow anew: quietly, as the sweep did (it printed TensorFlow's
    # start-up lines twice per run), unless the user asked to see them.
    startup.quiet_tensorflow_import(force=True)
    from keras_normloss import data, train
    from keras_normloss.training.faults import Interrupted

    if parent is not None and parent != os.getpid():  # a process of its own (tests run it inline)

        def interrupt(signum, frame):
            raise Interrupted(signum)

        try:
            # The signals held since the process began (`_signals_held_for_the_child`) arrive
            # now: before training, a stop needs nothing saved.
            for signum in _STOP_SIGNALS:
                signal.signal(signum, interrupt)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            _die_with(parent)
        except Interrupted as error:
            print(f"keras-normloss sweep: {error}", file=sys.stderr, flush=True)
            sys.exit(error.exit_status)
    try:
        train.run(config)
    except (errors.UsageError, data.DatasetNotPreparedError, data.MalformedDatasetError) as error:
        print(f"keras-normloss sweep: error: {error}", file=sys.stderr)
        sys.exit(2)
    except train.RunStopped as error:
        # A stop by a signal says "stopped by ..."; the others are errors.
        kind = "" if isinstance(error, (train.Preempted, Interrupted)) else "error: "
        print(f"keras-normloss sweep: {kind}{error}", file=sys.stderr, flush=True)
        sys.exit(error.exit_status)


def build_parser():
    from keras_normloss import methods, train

    parser = cli.ArgumentParser(
        prog="keras-normloss sweep",
        description="A resumable grid of runs of one preset, and summary.csv. Exit status: "
        "0 done, 1 a run failed, 2 bad input, 130/143 stopped by Ctrl-C/SIGTERM.",
    )
    train.add_shared_arguments(parser)
    parser.add_argument(
        "--method",
        "--regularizer",
        dest="method",
        nargs="+",
        required=True,
        choices=methods.names(),
        help="methods to compare (--regularizer is the old name of this option)",
    )
    parser.add_argument(
        "--factor",
        nargs="+",
        type=cli.non_negative_float,
        default=[],
        help="factors for the methods that take one (default: the preset's)",
    )
    parser.add_argument(
        "--seed", nargs="+", type=cli.seed, default=[0], help="seeds, 0 to 2**32 - 1 (default 0)"
    )
    parser.add_argument(
        "--batch-size",
        nargs="+",
        type=cli.positive_int,
        default=[None],
        help="global batch sizes (default: the preset's)",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="the sweep directory: new, empty, or this sweep's (never a train run's)",
    )
    return parser


@cli.command("sweep")
def main(argv=None):
    """`keras-normloss sweep`. Prints the table of finished runs at the end; returns 0, 1 if a
    run failed, 130 or 143 if stopped by SIGINT or SIGTERM (the running run saved a
    checkpoint), or exits with status 2 on bad input."""
    from keras_normloss import train

    args = build_parser().parse_args(argv)
    cli.start_backend(args.backend, args.verbose)
    try:
        rows = sweep(
            args.preset,
            args.output,
            regularizers=args.method,
            factors=args.factor,
            seeds=args.seed,
            batch_sizes=args.batch_size,
            **train.shared_overrides(args),
        )
    except (RunError, RunsDiverged) as error:
        print(format_table(write_summary(args.output)))
        kind = "stopped" if error.exit_status in STOPPED_BY else "error"
        print(f"keras-normloss sweep: {kind}: {error}", file=sys.stderr)
        return error.exit_status
    except train.RunStopped as error:  # a run's files are damaged (checked before any run)
        print(f"keras-normloss sweep: error: {error}", file=sys.stderr)
        return error.exit_status
    print(format_table(rows))
    for method, batch in dict.fromkeys((r["method"], int(r["batch_size"])) for r in rows):
        try:
            factor, error = choose_factor(rows, method, batch_size=batch)
        except ValueError:  # no factor, or no validation split: nothing is chosen
            continue
        print(
            f"{method} at batch {batch}: factor {factor:g} chosen on validation (mean "
            f"validation error {100 * error:.2f} %)"
        )
    runs = "1 run" if len(rows) == 1 else f"{len(rows)} runs"
    print(f"{runs} finished; {os.path.join(args.output, 'summary.csv')}")
    return 0
