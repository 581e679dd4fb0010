"""The numbers the README and docs/results.md state about the second study are its committed rows'.

Recomputed here with NumPy and SciPy's t distribution from `docs/results/pilot/pilot.csv`,
`docs/results/timescale-study/study.csv` and the kept per-run metrics and dynamics, independently
of the report's code. Each number is looked for with the label the prose gives it ("Norm Loss −
weight decay +1.09 points"), signed as the prose writes it: a number copied by hand, a sign or a
direction turned round, or prose left behind by new rows fails. The batch phase's and the
exploratory arm's numbers are checked once their rows are all in (until then those tests skip,
and the prose must say the batch claim is pending).
"""

import csv
import gzip
import pathlib

import numpy as np
import pytest
from scipy import integrate, stats

ROOT = pathlib.Path(__file__).resolve().parent.parent
PILOT = ROOT / "docs" / "results" / "pilot" / "pilot.csv"
STUDY = ROOT / "docs" / "results" / "timescale-study"
README, RESULTS = "README.md", "results.md"
PATHS = {README: ROOT / "README.md", RESULTS: ROOT / "docs" / "results.md"}
ARMS = ("none", "normloss", "weight-decay")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _signed(x, digits=2):
    """As the prose writes a difference: +1.09, −0.43 (a true minus sign)."""
    return f"{x:+.{digits}f}".replace("-", "−")


def _interval(differences, level=0.95):
    """Mean and Student-t interval of paired differences."""
    d = np.asarray(differences, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


def _bracket(low, high, digits=2):
    return f"[{_signed(low, digits)}, {_signed(high, digits)}]"


def _by_seed(rows, **where):
    return {int(r["seed"]): r for r in rows if all(r[k] == v for k, v in where.items())}


def _paired(first, second, value=lambda r: 100 * float(r["final_test_error"])):
    return [value(first[s]) - value(second[s]) for s in sorted(set(first) & set(second))]


def _holm(differences):
    """Holm-adjusted p-values of two-sided paired t-tests, by hand: the i-th smallest of m
    p-values times m − i + 1 (i from 1), kept non-decreasing, capped at 1."""
    p = [stats.ttest_1samp(d, 0).pvalue for d in differences]
    holm, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(np.argsort(p)):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        holm[i] = running
    return holm


def _says(name, *texts):
    prose = " ".join(PATHS[name].read_text().split())
    for text in texts:
        assert text in prose, f"{name} lacks {text!r}"


def _both(*texts):
    for name in PATHS:
        _says(name, *texts)


@pytest.fixture(scope="module")
def study():
    return _rows(STUDY / "study.csv")


@pytest.fixture(scope="module")
def evaluation(study):
    rows = [r for r in study if r["phase"] == "evaluation"]
    arms = {m: _by_seed(rows, method=m) for m in ARMS}
    assert all(len(arm) == 5 for arm in arms.values())
    return arms


def test_the_pilot_numbers():
    rows = [r for r in _rows(PILOT) if r["regime"] == "noaug-13500"]
    none = _by_seed(rows, method="none")
    decay = _by_seed(rows, method="weight-decay", factor="0.0032")
    assert len(none) == len(decay) == 3
    train = 100 * np.mean([float(r["final_train_error"]) for r in none.values()])
    test = 100 * np.mean([float(r["final_test_error"]) for r in none.values()])
    mean, low, high = _interval(_paired(decay, none))
    assert high < 0
    _says(README, f"({train:.2f} % error, {test:.2f} % on test)")
    _says(RESULTS, f"{train:.2f} % training error and {test:.2f} % test error")
    _both(f"− `none`: {_signed(mean)} points", f"95 % interval {_bracket(low, high)}")


def test_the_grid_numbers(study):
    grid = [r for r in study if r["phase"] == "grid"]

    def final(method, factor, column):
        rs = [r for r in grid if r["method"] == method and r["factor"] == factor]
        assert len(rs) == 3
        return np.mean([float(r[column]) for r in rs])

    norms = [final(m, f, "final_norm_mean") for m, f in
             (("normloss", "0.0048"), ("weight-decay", "0.0095"), ("none", ""))]  # fmt: skip
    _says(README, "({:.3f} at its strongest factor, where weight decay's end at {:.3f} and "
                  "`none`'s at {:.3f})".format(*norms))  # fmt: skip
    _says(RESULTS, "the final mean channel norm is {:.3f} for Norm Loss, {:.3f} for weight decay "
                   "and {:.3f} for `none`".format(*norms))  # fmt: skip
    _says(
        RESULTS,
        *(
            f"({100 * final(m, f, 'final_test_error'):.2f} %"
            for m, f in (("weight-decay", "0.0032"), ("normloss", "0.0048"))
        ),  # fmt: skip
        f"{100 * final('normloss', '0.0016', 'final_test_error'):.2f} % at its chosen 0.3",
    )
    # Factor sensitivity: per tuning seed, max − min of test error over each method's grid.
    spreads = {}
    for method in ("normloss", "weight-decay"):
        mine = [r for r in grid if r["method"] == method]
        spreads[method] = {
            seed: 100 * np.ptp([float(r["final_test_error"]) for r in mine if r["seed"] == seed])
            for seed in sorted({r["seed"] for r in mine})
        }
    differences = [spreads["normloss"][s] - spreads["weight-decay"][s] for s in spreads["normloss"]]
    mean, low, high = _interval(differences)
    assert low < 0 < high  # so: not resolved
    _both(
        f"{np.mean(list(spreads['normloss'].values())):.2f} points for Norm Loss",
        f"{np.mean(list(spreads['weight-decay'].values())):.2f} for weight decay",
        f"Norm Loss − weight decay {_signed(mean)}",
        f"95 % interval {_bracket(low, high)}",
    )


def _mid_run(row, column):
    """The convolutions' dynamics sample nearest half the run's steps."""
    path = STUDY / "per-run" / row["run"] / "dynamics.csv.gz"
    with gzip.open(path, "rt", newline="") as f:
        conv = [s for s in csv.DictReader(f) if s["group"] == "conv"]
    middle = int(row["steps"]) / 2
    return float(min(conv, key=lambda s: abs(int(s["step"]) - middle))[column])


@pytest.mark.parametrize(
    ("column", "label"),
    [
        ("effective_lr", "fewer decades than weight decay's|fewer decades under Norm Loss"),
        ("angular_update", "fewer decades,"),
    ],  # fmt: skip
)
def test_the_mechanism_numbers(study, column, label):
    """Per tuning seed, log10(max/min) of the mid-run measure over each method's five factors."""
    grid = [r for r in study if r["phase"] == "grid"]
    decades = {}
    for method in ("normloss", "weight-decay"):
        for seed in sorted({r["seed"] for r in grid}):
            values = [
                _mid_run(r, column) for r in grid if r["method"] == method and r["seed"] == seed
            ]
            assert len(values) == 5
            decades.setdefault(method, []).append(np.log10(max(values) / min(values)))
    mean, low, high = _interval(np.subtract(decades["normloss"], decades["weight-decay"]))
    assert high < 0
    for name, words in zip(PATHS, label.split("|") * 2):
        _says(name, f"{-mean:.2f} {words}", _bracket(low, high))


def test_the_evaluation_numbers(evaluation):
    normloss_decay = _paired(evaluation["normloss"], evaluation["weight-decay"])
    mean, low, high = _interval(normloss_decay)
    _, low90, high90 = _interval(normloss_decay, level=0.90)
    assert low90 > 0.5 and min(normloss_decay) > 0  # worse by more than the margin, every seed
    _both(
        f"Norm Loss − weight decay {_signed(mean)} points",
        f"95 % interval {_bracket(low, high)}",
        f"90 % interval, {_bracket(low90, high90)}",
    )
    # Holm over the three comparisons, from two-sided paired t-tests, by hand.
    pairs = [("normloss", "weight-decay"), ("weight-decay", "none"), ("normloss", "none")]
    differences = [_paired(evaluation[a], evaluation[b]) for a, b in pairs]
    holm = _holm(differences)
    _both(f"Holm-adjusted p = {holm[0]:.3f}")
    _says(RESULTS, f"Holm p = {holm[1]:.3f}", f"Holm p = {holm[2]:.3f}")
    for (a, b), d in zip(pairs[1:], differences[1:]):
        m, lo, hi = _interval(d)
        label = {"weight-decay": "weight decay", "normloss": "Norm Loss"}[a]
        for name in PATHS:  # "Weight decay − `none` −1.52" at the start of a README sentence
            prose = " ".join(PATHS[name].read_text().split()).lower()
            assert f"{label} − `none` {_signed(m)}".lower() in prose, name
        _both(_bracket(lo, hi))
    # The one-sided test of "worse by more than the margin" and the TOST, in docs/results.md.
    se = np.std(normloss_decay, ddof=1) / np.sqrt(5)
    one_sided = stats.t.sf((mean - 0.5) / se, 4)
    tost = max(stats.t.sf((mean + 0.5) / se, 4), stats.t.cdf((mean - 0.5) / se, 4))
    _says(RESULTS, f"≤ +0.5 points p = {one_sided:.3f}", f"TOST, p = {tost:.3f}")
    # Each arm's mean test and validation error, and every seed's difference.
    for column, words in (
        ("final_test_error", "seeds: "),
        ("validation_error", "order was the same ("),
    ):
        means = [100 * np.mean([float(r[column]) for r in evaluation[m].values()]) for m in ARMS]
        _says(
            RESULTS,
            words + "`none` {:.2f} %, Norm Loss {:.2f} %, weight decay {:.2f} %".format(*means),
        )
    *first, last = (_signed(d) for d in normloss_decay)
    _says(RESULTS, f"per seed {', '.join(first)} and {last}")


def _cross_entropy(row):
    """The run's training cross-entropy, epoch by epoch, from its kept metrics."""
    path = STUDY / "per-run" / row["run"] / "metrics.csv.gz"
    with gzip.open(path, "rt", newline="") as f:
        return np.array([float(m["cross_entropy"]) for m in csv.DictReader(f)])


def test_the_convergence_numbers(evaluation):
    """Training cross-entropy averaged over each evaluation run's epochs, paired by seed."""
    curves = {m: {s: _cross_entropy(r) for s, r in evaluation[m].items()} for m in ARMS}
    mean_ce = {m: {s: c.mean() for s, c in curves[m].items()} for m in ARMS}
    seeds = sorted(mean_ce["none"])
    against = {
        other: _interval([mean_ce["normloss"][s] - mean_ce[other][s] for s in seeds])
        for other in ("weight-decay", "none")
    }
    assert against["weight-decay"][2] < 0 < against["none"][1]  # below weight decay, above none
    for other, label in (("weight-decay", "weight decay"), ("none", "`none`")):
        mean, low, high = against[other]
        _both(f"Norm Loss − {label} {_signed(mean, 3)}", _bracket(low, high, 3))
    # "Lower at every epoch on every seed" (the README: "below it at every epoch on every seed").
    for s in seeds:
        assert len(curves["normloss"][s]) == 20
        assert (curves["normloss"][s] < curves["weight-decay"][s]).all()
    _both("every epoch on every seed")
    means = [np.mean(list(mean_ce[m].values())) for m in ARMS]
    _says(RESULTS, "20 epochs: `none` {:.3f}, Norm Loss {:.3f}, weight decay {:.3f}".format(*means))
    ends = [np.mean([c[-1] for c in curves[m].values()]) for m in ARMS]
    _says(RESULTS, "at the end {:.3f}, {:.3f} and {:.3f}".format(*ends))


def test_no_claim_is_left_pending_once_its_runs_are_in(study):
    """The batch phase's 4 batches × 3 arms × 3 seeds: once all 36 rows are committed, the prose
    must give the batch claim its verdict (before that, "pending" is the truth)."""
    batch = {(r["batch_size"], r["method"], r["seed"]) for r in study if r["phase"] == "batch"}
    for name in PATHS:
        prose = " ".join(PATHS[name].read_text().split())
        pending = "**Less sensitive to the batch size: pending" in prose
        assert pending == (len(batch) < 4 * 3 * 3), name


def test_the_batch_numbers(study):
    """Once the batch phase is complete: per seed 200-202, each method's spread (max − min) of
    test error over batches 32, 64, 128 (the evaluation's runs), 256 and 512; the prose gives
    Norm Loss − weight decay of the spreads, with its interval ("Norm Loss − weight decay
    ±x.xx points, 95 % interval [...]"), and docs/results.md each method's mean spread ("spread
    over the batch sizes: `none` x.xx, Norm Loss x.xx, weight decay x.xx points")."""
    batch = [r for r in study if r["phase"] == "batch"]
    if len({(r["batch_size"], r["method"], r["seed"]) for r in batch}) < 4 * 3 * 3:
        pytest.skip(f"the batch phase is not complete ({len(batch)} of 36 rows)")
    seeds = (200, 201, 202)
    cells = batch + [r for r in study if r["phase"] == "evaluation" and int(r["seed"]) in seeds]
    spread = {}
    for method in ARMS:
        for s in seeds:
            errors = [100 * float(r["final_test_error"]) for r in cells
                      if r["method"] == method and int(r["seed"]) == s]  # fmt: skip
            assert len(errors) == 5
            spread.setdefault(method, []).append(max(errors) - min(errors))
    mean, low, high = _interval(np.subtract(spread["normloss"], spread["weight-decay"]))
    verdict = "shown" if high < 0 else "not shown" if low > 0 else "not resolved"
    _both(f"**Less sensitive to the batch size: {verdict}",
          f"Norm Loss − weight decay {_signed(mean)} points, 95 % interval {_bracket(low, high)}")  # fmt: skip
    means = [np.mean(spread[m]) for m in ARMS]
    _says(RESULTS, "spread over the batch sizes: `none` {:.2f}, Norm Loss {:.2f}, weight decay "
                   "{:.2f} points".format(*means))  # fmt: skip
    _says(README, "{1:.2f} points for Norm Loss, {2:.2f} for weight decay and {0:.2f} for "
                  "`none`".format(*means))  # fmt: skip
    # Each seed's spread, Norm Loss against weight decay ("0.93 against 1.53, ..."), and the
    # smaller for Norm Loss on each, as the prose says.
    assert all(n < w for n, w in zip(spread["normloss"], spread["weight-decay"]))
    pairs = [f"{n:.2f} against {w:.2f}" for n, w in zip(spread["normloss"], spread["weight-decay"])]
    _says(RESULTS, "smaller on each seed (" + ", ".join(pairs) + ";")
    mean, low, high = _interval(np.subtract(spread["normloss"], spread["none"]))
    _says(RESULTS, f"Norm Loss − `none` {_signed(mean)}, {_bracket(low, high)}")
    # The cells the prose names: each arm's mean at batches 32 and 512, `none`'s seeds at 512,
    # and weight decay below Norm Loss at every batch.
    cell = {(m, int(r["batch_size"]), int(r["seed"])): 100 * float(r["final_test_error"])
            for r in cells for m in [r["method"]]}  # fmt: skip
    mean_at = {(m, b): np.mean([cell[m, b, s] for s in seeds]) for m in ARMS
               for b in (32, 64, 128, 256, 512)}  # fmt: skip
    assert all(mean_at["weight-decay", b] < mean_at["normloss", b] for b in (32, 64, 128, 256, 512))
    _says(RESULTS, "{:.2f} against {:.2f} % at batch 32 to {:.2f} against {:.2f} % at batch "
                   "512".format(mean_at["weight-decay", 32], mean_at["normloss", 32],
                                mean_at["weight-decay", 512], mean_at["normloss", 512]))  # fmt: skip
    at_512 = ", ".join(f"{cell['none', 512, s]:.2f}" for s in seeds[:2])
    _says(RESULTS, f"({at_512} and {cell['none', 512, seeds[2]]:.2f} % on the three seeds, mean "
                   f"{mean_at['none', 512]:.2f} %)",
          f"(Norm Loss {mean_at['normloss', 512]:.2f} %, weight decay "
          f"{mean_at['weight-decay', 512]:.2f} %, means; each its own highest)")  # fmt: skip
    for m in ("normloss", "weight-decay"):  # "each its own highest"
        assert mean_at[m, 512] == max(mean_at[m, b] for b in (32, 64, 128, 256, 512))
    assert sum(cell["none", 512, s] > max(cell["none", b, s] for b in (32, 64, 128, 256))
               for s in seeds) == 2  # fmt: skip
    # "Spreads of this size are about what seed noise alone gives": the expected range of five
    # normal draws (2.326 σ) at Norm Loss's and weight decay's seed spread in the evaluation.
    d2 = integrate.quad(lambda x: 1 - stats.norm.cdf(x) ** 5 - stats.norm.sf(x) ** 5,
                        -np.inf, np.inf)[0]  # fmt: skip
    noise = sorted(
        d2 * np.std([100 * float(r["final_test_error"]) for r in study
                     if r["phase"] == "evaluation" and r["method"] == m], ddof=1)
        for m in ("normloss", "weight-decay")
    )  # fmt: skip
    _says(RESULTS, f"seed spread is {noise[0]:.1f}-{noise[1]:.1f} points")


def test_the_kernels_only_numbers(study, evaluation):
    """The exploratory arm (weight decay at its chosen factor on the kernels only), once its five
    rows are in: each paired difference with its interval, as the prose labels it ("Norm Loss −
    weight decay on the kernels only +x.xx points, 95 % interval [...]"), Holm over its own
    three comparisons, and its mean test error."""
    arm = _by_seed(study, phase="exploratory", method="weight-decay-kernels")
    if len(arm) < 5:
        pytest.skip(f"the exploratory arm is not complete ({len(arm)} of 5 rows)")
    assert {r["factor"] for r in arm.values()} == {evaluation["weight-decay"][200]["factor"]}
    assert all("--weight-decay-on kernels" in r["command"] for r in arm.values())
    arms = {**evaluation, "kernels": arm}
    pairs = [("normloss", "kernels"), ("kernels", "weight-decay"), ("kernels", "none")]
    labels = {
        "normloss": "Norm Loss",
        "kernels": "weight decay on the kernels only",
        "weight-decay": "weight decay on every parameter",
        "none": "`none`",
    }
    differences = [_paired(arms[a], arms[b]) for a, b in pairs]
    holm = _holm(differences)
    for (a, b), d, adjusted in zip(pairs, differences, holm):
        mean, low, high = _interval(d)
        p_text = "< 0.001" if adjusted < 0.001 else f"= {adjusted:.3f}"
        _says(RESULTS, f"{labels[a]} − {labels[b]} {_signed(mean)} points, 95 % interval "
                       f"{_bracket(low, high)}, Holm p {p_text}")  # fmt: skip
    mean, low, high = _interval(differences[0])
    _says(README, f"Norm Loss − weight decay on the kernels only {_signed(mean)} points, 95 % "
                  f"interval {_bracket(low, high)}")  # fmt: skip
    _, low90, high90 = _interval(differences[0], level=0.90)
    se = np.std(differences[0], ddof=1) / np.sqrt(5)
    tost = max(stats.t.sf((mean + 0.5) / se, 4), stats.t.cdf((mean - 0.5) / se, 4))
    per_seed = ", ".join(_signed(d) for d in differences[0][:-1])
    _says(RESULTS, f"(per seed {per_seed} and {abs(differences[0][-1]):.2f})",
          f"(90 % interval {_bracket(low90, high90)}; TOST against the ±0.5 margin, borrowed "
          f"from the evaluation, p = {tost:.3f})")  # fmt: skip
    assert all(d < 0 for d in differences[2])  # "below `none` on every seed"
    test_error = {m: 100 * np.mean([float(r["final_test_error"]) for r in arms[m].values()])
                  for m in arms}  # fmt: skip
    _says(RESULTS, f"weight decay on the kernels only {test_error['kernels']:.2f} %, between "
                   f"weight decay on every parameter ({test_error['weight-decay']:.2f} %) and "
                   f"Norm Loss ({test_error['normloss']:.2f} %)")  # fmt: skip
    # The convergence measure against the arm: each run's epoch-mean training cross-entropy.
    ce = {m: {s: _cross_entropy(r).mean() for s, r in arms[m].items()} for m in arms}
    mean, low, high = _interval([ce["normloss"][s] - ce["kernels"][s] for s in sorted(arm)])
    _says(RESULTS, f"that arm's {_signed(mean, 3)}, 95 % interval {_bracket(low, high, 3)}")
    _says(README, f"(exploratory) the gap was about two-thirds as large, {_signed(mean, 3)}, "
                  f"{_bracket(low, high, 3)}")  # fmt: skip
    gap = np.mean([ce["normloss"][s] - ce["weight-decay"][s] for s in sorted(arm)])
    assert 0.6 < mean / gap < 0.7  # "about two-thirds as large"; so "about a third" closed
    mean, low, high = _interval([ce["weight-decay"][s] - ce["kernels"][s] for s in sorted(arm)])
    _says(RESULTS, f"on the kernels only {_signed(mean, 3)}, {_bracket(low, high, 3)}")
