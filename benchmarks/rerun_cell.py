"""Re-runs one recorded run of a study from its row alone (its commit and its exact command) in a
clean clone of the repository at that commit, and compares the two runs epoch by epoch.

    python benchmarks/rerun_cell.py docs/results/timescale-study/study.csv \\
        grid_noaug-13500_weight-decay_f0.0032_s100 --output runs/rerun
    python benchmarks/rerun_cell.py ... --record          # adds the comparison to reruns.csv/.md

The clone is `git clone` of this repository checked out at the row's commit (a row whose code was
modified, `+modified`, cannot be re-run and is refused). The command runs verbatim in OUTPUT,
`keras-normloss` being `python -m keras_normloss` with the clone first on `PYTHONPATH`, so the
clone's package is the one that runs, with this environment's libraries. The comparison: the row's
final numbers against the re-run's, and the largest per-epoch difference of each metric against
the kept `per-run/NAME/metrics.csv.gz`. The study's runs do not use `--deterministic`, so
TensorFlow promises no bitwise agreement; this measures how far a re-run lands (on the machine
that recorded the row, the first came back identical to every recorded digit), which a reader
compares with the spread between seeds.

With `--record`, appends a row to `reruns.csv` beside the table (the re-run's tool commit, the
command, the machine, both values of every compared number) and rewrites `reruns.md` from it.
"""

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import recorded_runs

FINAL = ("final_train_error", "final_train_cross_entropy", "validation_error",
         "final_test_error", "final_norm_mean")  # fmt: skip
PER_EPOCH = ("error", "cross_entropy", "validation_error", "test_error", "norm_mean")
COLUMNS = ("run", "commit", "command", "rerun_by", "machine", "wall_seconds",
           *(f"{k}_{side}" for k in FINAL for side in ("recorded", "rerun")),
           *(f"max_epoch_difference_{k}" for k in PER_EPOCH))  # fmt: skip


def find_row(table, run):
    rows = [r for r in recorded_runs.read_rows(table) if r["run"] == run]
    if not rows:
        raise SystemExit(f"rerun: {table} has no run named {run!r}")
    row = rows[0]
    if not row.get("commit") or row["commit"].endswith("+modified") or row["commit"] == "unknown":
        raise SystemExit(f"rerun: {run} ran from code no commit holds ({row.get('commit')!r}); "
                         "its command alone cannot reproduce it")  # fmt: skip
    return row


def clean_clone(commit, where):
    """A `git clone` of this repository at `commit`, in WHERE/clone-COMMIT (made once; checked
    to be at that commit and unmodified each time)."""
    top = recorded_runs.repository()
    if top is None:
        raise SystemExit("rerun: this checkout is not a git repository; no commit to clone")
    clone = os.path.join(where, f"clone-{commit[:12]}")
    if not os.path.isdir(clone):
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", top, clone], check=True)
        checkout = subprocess.run(["git", "-C", clone, "checkout", "--quiet", "--detach", commit],
                                  capture_output=True, text=True)  # fmt: skip
        if checkout.returncode != 0:
            raise SystemExit(f"rerun: commit {commit} is not in this repository "
                             f"({checkout.stderr.strip()}); fetch it first")  # fmt: skip
    head = subprocess.run(["git", "-C", clone, "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    changed = subprocess.run(["git", "-C", clone, "status", "--porcelain"], capture_output=True,
                             text=True).stdout.strip()  # fmt: skip
    if head != commit or changed:
        raise SystemExit(f"rerun: {clone} is not a clean checkout of {commit}; remove it")
    return clone


def rerun(row, clone, output):
    """Runs the row's command in OUTPUT with the clone's package; returns (run dir, seconds)."""
    words = shlex.split(row["command"])
    if words[:2] != ["keras-normloss", "train"] or words[-2] != "--output":
        raise SystemExit(f"rerun: not a recorded train command: {row['command']}")
    run_dir = os.path.join(output, words[-1])
    if os.path.exists(run_dir):  # `train` would resume it, or say it is finished: no re-run
        raise SystemExit(f"rerun: {run_dir} exists; give another --output")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [clone, *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    where = subprocess.run([sys.executable, "-c", "import keras_normloss; "
                            "print(keras_normloss.__file__)"], cwd=output, env=env,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    if not os.path.abspath(where).startswith(os.path.abspath(clone) + os.sep):
        raise SystemExit(f"rerun: the package imported is {where!r}, not the clone's")
    start = time.monotonic()
    status = subprocess.run([sys.executable, "-m", "keras_normloss", *words[1:]], cwd=output,
                            env=env).returncode  # fmt: skip
    if status != 0:
        raise SystemExit(f"rerun: the command ended with status {status}")
    return run_dir, time.monotonic() - start


def read_results(run_dir):
    """The re-run's results.json."""
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f)


def compare(row, run_dir, results, docs):
    """{number: (recorded, rerun)} for the final numbers, and {metric: largest |difference|} over
    the epochs against the kept metrics; `results` is the re-run's results.json."""
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        mine = list(csv.DictReader(f))
    found = dict(final_train_error=mine[-1]["error"],
                 final_train_cross_entropy=mine[-1]["cross_entropy"],
                 validation_error=results.get("final_validation_error", ""),
                 final_test_error=results["final_test_error"],
                 final_norm_mean=mine[-1]["norm_mean"])  # fmt: skip
    finals = {k: (float(row[k]), float(found[k])) for k in FINAL}
    kept = recorded_runs.read_kept(docs, row["run"], "metrics.csv")
    if len(kept) != len(mine):
        raise SystemExit(f"rerun: {len(mine)} epochs against the kept {len(kept)}")
    epochs = {k: max(abs(float(a[k]) - float(b[k])) for a, b in zip(kept, mine))
              for k in PER_EPOCH}  # fmt: skip
    return finals, epochs


def record(docs, row, results, finals, epochs, wall, rerun_by):
    """Appends the comparison to reruns.csv and rewrites reruns.md; `results` is the re-run's
    results.json (it names the machine)."""
    path = os.path.join(docs, "reruns.csv")
    line = dict(run=row["run"], commit=row["commit"], command=row["command"],
                rerun_by=rerun_by, machine=recorded_runs.machine(results),
                wall_seconds=f"{wall:.0f}")  # fmt: skip
    for k, (a, b) in finals.items():
        line[f"{k}_recorded"], line[f"{k}_rerun"] = f"{a:.6g}", f"{b:.6g}"
    for k, d in epochs.items():
        line[f"max_epoch_difference_{k}"] = f"{d:.6g}"
    recorded_runs.append_row(path, COLUMNS, line)
    return [path, write_report(docs)]


def identical(line):
    """Whether a reruns.csv row reproduced every recorded digit: its final numbers and every
    epoch's metrics."""
    same = all(line[f"{k}_recorded"] == line[f"{k}_rerun"] for k in FINAL)
    return same and all(float(line[f"max_epoch_difference_{k}"]) == 0 for k in PER_EPOCH)


def write_report(docs):
    """reruns.md from reruns.csv alone."""
    rows = recorded_runs.read_rows(os.path.join(docs, "reruns.csv"))
    lines = ["# Re-runs of recorded runs", "",
             "Written by `benchmarks/rerun_cell.py --record` from `reruns.csv`: each row re-ran a "
             "study row's exact command in a clean clone at the row's commit. Errors in %.", "",
             "| run | commit | test error (recorded → re-run) | validation error | "
             "train error | mean channel norm | largest per-epoch test-error difference | "
             "every recorded digit the same |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:

        def pair(k, scale=100, digits=2):
            a, b = float(r[f"{k}_recorded"]), float(r[f"{k}_rerun"])
            return f"{scale * a:.{digits}f} → {scale * b:.{digits}f}"

        lines.append(
            f"| {r['run']} | {r['commit'][:7]} | {pair('final_test_error')} | "
            f"{pair('validation_error')} | {pair('final_train_error')} | "
            f"{pair('final_norm_mean', 1, 3)} | "
            f"{100 * float(r['max_epoch_difference_test_error']):.2f} | "
            f"{'yes' if identical(r) else 'no'} |"
        )
    lines += ["", "The commands, as recorded, and where each re-run ran:", ""]
    lines += [f"- `{r['command']}`: re-run by {r['rerun_by'][:7]} on {r['machine']}"
              for r in rows]  # fmt: skip
    path = os.path.join(docs, "reruns.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="a study's recorded CSV (study.csv or pilot.csv)")
    parser.add_argument("run", help="the row's run name")
    parser.add_argument("--output", help="where the clone and the re-run go (default: a "
                        "temporary folder)")  # fmt: skip
    parser.add_argument(
        "--record", action="store_true", help="append the comparison to reruns.csv beside the table"
    )
    parser.add_argument("--commit", action="store_true", help="with --record: commit them")
    args = parser.parse_args(argv)
    row = find_row(args.table, args.run)
    rerun_by = recorded_runs.commit_of_code()  # now: this checkout may change while it runs
    output = args.output or tempfile.mkdtemp(prefix="rerun-")
    os.makedirs(output, exist_ok=True)
    clone = clean_clone(row["commit"], output)
    print(f"rerun: {row['run']} at {row['commit'][:12]} in {clone}\n    {row['command']}",
          flush=True)  # fmt: skip
    run_dir, wall = rerun(row, clone, output)
    docs = os.path.dirname(os.path.abspath(args.table))
    results = read_results(run_dir)
    finals, epochs = compare(row, run_dir, results, docs)
    for k, (a, b) in finals.items():
        print(f"{k:>26}: recorded {a:.6g}, re-run {b:.6g}, difference {b - a:+.3g}")
    for k, d in epochs.items():
        print(f"{'largest per-epoch |Δ| ' + k:>40}: {d:.3g}")
    same = all(a == b for a, b in finals.values())
    print(f"rerun: the final numbers are {'identical' if same else 'not identical'}")
    if args.record:
        written = record(docs, row, results, finals, epochs, wall, rerun_by)
        if args.commit:
            recorded_runs.git_commit(written, f"rerun: {row['run']}", "rerun")
    return 0


if __name__ == "__main__":
    sys.exit(main())
