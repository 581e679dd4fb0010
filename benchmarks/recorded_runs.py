"""Runs recorded to the row: each `keras-normloss train` run of a study in a process of its own, its
row (with the code's commit, the exact command and the machine) appended to a CSV, its per-epoch
metrics and norm dynamics kept compressed, and, on request, all of it committed at once, so that a
later sitting on a new machine resumes from what is committed (a run with a row is not run again).

The regime pilot and the timescale study share it; `keras_normloss.training.sweep` is the library's sweep,
for users, which records nothing of this.
"""

import csv
import gzip
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

PER_RUN = "per-run"  # DOCS/per-run/NAME/: each run's metrics and dynamics (not runs/: .gitignored)
KEPT = ("metrics.csv", "dynamics.csv")
# What every recorded row holds, read from the run's own files; a study's columns come first.
RECORDED = (
    "timescale_steps",
    "timescale_fraction",
    "steps",
    "final_train_error",
    "final_train_cross_entropy",
    "validation_error",
    "final_test_error",
    "final_norm_mean",
    # The run's process in this sitting: less than the run's time when it resumed an interrupted
    # one (the kept metrics.csv's epoch_seconds add up every epoch's training).
    "wall_seconds",
    "run",
    "commit",
    "command",
    "machine",
)


def repository():
    """The top of the repository this file is in (None outside one): the code a run uses."""
    here = os.path.dirname(os.path.abspath(__file__))
    top = subprocess.run(["git", "-C", here, "rev-parse", "--show-toplevel"], capture_output=True,
                         text=True).stdout.strip()  # fmt: skip
    return top or None


def commit_of_code():
    """HEAD of the repository this file is in, with `+modified` when the package or the
    benchmarks differ from it (then the row's command alone does not reproduce the run)."""
    here = os.path.dirname(os.path.abspath(__file__))
    head = subprocess.run(
        ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "keras_normloss",
         "benchmarks"], capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return (head or "unknown") + ("+modified" if dirty else "")


def machine(results=None):
    """The machine in words, without its name or any path; with a run's `results.json`, its
    devices and the versions it ran with."""
    words = f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}"
    if not results:
        return words
    gpus = (results.get("device") or {}).get("gpus") or []
    versions = results.get("versions") or {}
    names = ("python", "keras", "tensorflow", "jax", "numpy")
    return "; ".join([
        words,
        f"GPUs: {', '.join(map(str, gpus))}" if gpus else "no GPU",
        f"{results.get('backend', '?')} backend",
        ", ".join(f"{n} {versions[n]}" for n in names if n in versions),
    ])  # fmt: skip


def read_rows(path):
    """The rows of a recorded CSV as dicts of strings (none when it does not exist yet)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path, columns, row):
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, columns)
        if new:
            writer.writeheader()
        writer.writerow(row)


def run_train(arguments, output, name):
    """`keras-normloss train ARGUMENTS --output OUTPUT/NAME` in a process of its own, with the
    package of this repository (first on `PYTHONPATH`: the code `commit_of_code` names, not
    whichever copy is installed).

    Returns:
        (exit status, wall seconds, the command as a user types it, with the run's name as its
        output directory: no path of this machine).
    """
    command = shlex.join(["keras-normloss", "train", *arguments, "--output", name])
    top = repository()
    env = dict(os.environ)
    if top:
        env["PYTHONPATH"] = os.pathsep.join([top, *filter(None, [env.get("PYTHONPATH")])])
    start = time.monotonic()
    status = subprocess.run(
        [sys.executable, "-m", "keras_normloss", "train", *arguments, "--output",
         os.path.join(output, name)], env=env,
    ).returncode  # fmt: skip
    return status, time.monotonic() - start, command


def recorded_fields(run_dir, steps, command, wall, commit=None):
    """The `RECORDED` fields of a finished run, from its results.json and metrics.csv; `commit`
    the code's (default: `commit_of_code()` now)."""
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        last = list(csv.DictReader(f))[-1]
    timescale = results.get("timescale") or {}
    return dict(
        timescale_steps=timescale.get("steps", ""),
        timescale_fraction=timescale.get("fraction_of_run", ""),
        steps=steps, final_train_error=last["error"],
        final_train_cross_entropy=last["cross_entropy"],
        validation_error=results.get("final_validation_error", ""),
        final_test_error=results["final_test_error"], final_norm_mean=last["norm_mean"],
        wall_seconds=f"{wall:.0f}", run=os.path.basename(run_dir),
        commit=commit or commit_of_code(),
        command=command, machine=machine(results),
    )  # fmt: skip


def keep_run_files(run_dir, docs):
    """The run's metrics.csv and dynamics.csv, compressed (reproducibly: no time stamp), under
    DOCS/per-run/NAME/; returns the paths written."""
    target = os.path.join(docs, PER_RUN, os.path.basename(run_dir))
    os.makedirs(target, exist_ok=True)
    kept = []
    for name in KEPT:
        source = os.path.join(run_dir, name)
        if os.path.exists(source):
            with (
                open(source, "rb") as f,
                gzip.GzipFile(os.path.join(target, name + ".gz"), "wb", mtime=0) as out,
            ):
                shutil.copyfileobj(f, out)
            kept.append(os.path.join(target, name + ".gz"))
    return kept


def read_kept(docs, run, name):
    """A kept per-run CSV (`metrics.csv` or `dynamics.csv`) as a list of dicts, or `[]`."""
    path = os.path.join(docs, PER_RUN, run, name + ".gz")
    if not os.path.exists(path):
        return []
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def git_commit(paths, message, who):
    """Commits exactly `paths` (nothing else staged), retrying while another git holds the lock."""
    top = subprocess.run(
        ["git", "-C", os.path.dirname(os.path.abspath(paths[0])), "rev-parse", "--show-toplevel"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    relative = [os.path.relpath(os.path.abspath(p), top) for p in paths]
    for _ in range(30):
        add = subprocess.run(["git", "-C", top, "add", "--", *relative], capture_output=True)
        unchanged = subprocess.run(
            ["git", "-C", top, "diff", "--cached", "--quiet", "--", *relative]
        ).returncode
        if add.returncode == 0 and unchanged == 0:
            return  # the files are as committed: nothing to commit
        done = (
            add.returncode == 0
            and subprocess.run(
                ["git", "-C", top, "commit", "-q", "-m", message, "--", *relative],
                capture_output=True,
            ).returncode
            == 0
        )
        if done:
            return
        time.sleep(2)
    print(f"{who}: could not commit {relative}; they are on disk", file=sys.stderr)


def keep_missing_files(table, output, docs, commit, who):
    """For rows whose per-run files a crash (or an older version) left out: keep them now."""
    for row in read_rows(table):
        name = row["run"]
        run_dir = os.path.join(output, name)
        if os.path.isdir(run_dir) and not os.path.isdir(os.path.join(docs, PER_RUN, name)):
            kept = keep_run_files(run_dir, docs)
            if commit and kept:
                git_commit([table, *kept], f"{who}: {name}'s metrics", who)


def run_and_record(arguments, name, steps, fields, where, who):
    """One run of a study, start to row: `keras-normloss train ARGUMENTS` into OUTPUT/NAME, then
    its row (`fields`, the study's own columns, then the `RECORDED` ones) recorded as `record`
    does.

    Args:
        where: a dict of `output` (the runs' directory), `table` and `columns` (the study's CSV),
            `docs`, `report` (rewrites the report, returns the paths written) and `commit`.

    Returns:
        The run's exit status (0: recorded; otherwise nothing is, and a message says so).
    """
    before = commit_of_code()
    status, wall, command = run_train(arguments, where["output"], name)
    if status != 0:
        print(f"{who}: run {name} ended with status {status}; stopping", file=sys.stderr)
        return status
    run_dir = os.path.join(where["output"], name)
    # The code that ran is the code at the start; if the checkout moved meanwhile, no commit
    # names it for certain.
    after = commit_of_code()
    commit = before if after == before or before.endswith("+modified") else before + "+modified"
    row = {**fields, **recorded_fields(run_dir, steps, command, wall, commit)}
    record(where["table"], where["columns"], row, run_dir, where["docs"], where["report"],
           where["commit"], who)  # fmt: skip
    return 0


def record(table, columns, row, run_dir, docs, report, commit, who):
    """A finished run's row appended, its files kept, the report rewritten (`report()` returns
    the paths it wrote) and, with `commit`, all of them committed as one."""
    append_row(table, columns, row)
    kept = keep_run_files(run_dir, docs)
    written = report()
    if commit:
        git_commit([table, *written, *kept], f"{who}: {row['run']}", who)
