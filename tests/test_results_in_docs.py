"""The numbers the README and docs/results.md state about the second study are its committed rows'.

Recomputed here with NumPy and SciPy's t distribution from `docs/results/pilot/pilot.csv`,
`docs/results/timescale-study/study.csv` and the kept per-run dynamics, independently of the
report's code: a figure copied by hand into the prose, or prose left behind by new rows, fails.
"""

import csv
import gzip
import io
import pathlib

import numpy as np
import pytest
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parent.parent
PILOT = ROOT / "docs" / "results" / "pilot" / "pilot.csv"
STUDY = ROOT / "docs" / "results" / "timescale-study"
DOCS = [ROOT / "README.md", ROOT / "docs" / "results.md"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _signed(x, digits=2):
    """As the prose writes a difference: +1.09, −0.43 (a true minus sign)."""
    text = f"{x:+.{digits}f}"
    return text.replace("-", "−")


def _interval(differences, level=0.95):
    """Mean and Student-t interval of paired differences."""
    d = np.asarray(differences, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


def _by_seed(rows, **where):
    return {int(r["seed"]): r for r in rows if all(r[k] == v for k, v in where.items())}


def _paired(first, second, column="final_test_error", scale=100):
    seeds = sorted(set(first) & set(second))
    return [scale * (float(first[s][column]) - float(second[s][column])) for s in seeds]


def _prose():
    return {path.name: " ".join(path.read_text().split()) for path in DOCS}


@pytest.fixture(scope="module")
def study():
    return _rows(STUDY / "study.csv")


def _in_both(*texts):
    for name, prose in _prose().items():
        for text in texts:
            assert text in prose, f"{name} lacks {text!r}"


def test_the_pilot_numbers():
    rows = [r for r in _rows(PILOT) if r["regime"] == "noaug-13500"]
    none = _by_seed(rows, method="none")
    decay = _by_seed(rows, method="weight-decay", factor="0.0032")
    train = 100 * np.mean([float(r["final_train_error"]) for r in none.values()])
    test = 100 * np.mean([float(r["final_test_error"]) for r in none.values()])
    mean, low, high = _interval(_paired(decay, none))
    assert len(none) == 3 and high < 0
    _in_both(
        f"{train:.2f} %",
        f"{test:.2f} %",
        f"{-mean:.2f} points",
        f"[{_signed(low)}, {_signed(high)}]",
    )


def test_the_grid_numbers(study):
    grid = [r for r in study if r["phase"] == "grid"]

    def final(method, factor, column):
        rs = [r for r in grid if r["method"] == method and r["factor"] == factor]
        assert len(rs) == 3
        return np.mean([float(r[column]) for r in rs])

    # The strongest factors' final norms; docs/results.md also quotes the tuning seeds' test errors.
    _in_both(
        f"{final('normloss', '0.0048', 'final_norm_mean'):.3f}",
        f"{final('weight-decay', '0.0095', 'final_norm_mean'):.3f}",
        f"{final('none', '', 'final_norm_mean'):.3f}",
    )
    for method, factor in [
        ("weight-decay", "0.0032"),
        ("normloss", "0.0048"),
        ("normloss", "0.0016"),
    ]:
        assert f"{100 * final(method, factor, 'final_test_error'):.2f} %" in _prose()["results.md"]
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
    _in_both(
        f"{np.mean(list(spreads['normloss'].values())):.2f}",
        f"{np.mean(list(spreads['weight-decay'].values())):.2f}",
        _signed(mean),
        f"95 % interval [{_signed(low)}, {_signed(high)}]",
    )


def _mid_run(row, column):
    """The convolutions' dynamics sample nearest half the run's steps."""
    path = STUDY / "per-run" / row["run"] / "dynamics.csv.gz"
    with gzip.open(path, "rt", newline="") as f:
        conv = [s for s in csv.DictReader(io.StringIO(f.read())) if s["group"] == "conv"]
    middle = int(row["steps"]) / 2
    return float(min(conv, key=lambda s: abs(int(s["step"]) - middle))[column])


@pytest.mark.parametrize(
    ("column", "text"),
    [("effective_lr", "4.80 fewer decades"), ("angular_update", "0.54 fewer decades")],
)
def test_the_mechanism_numbers(study, column, text):
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
    assert high < 0 and text.startswith(f"{-mean:.2f}")
    _in_both(text, f"[{_signed(low)}, {_signed(high)}]")


def test_the_evaluation_numbers(study):
    evaluation = [r for r in study if r["phase"] == "evaluation"]
    arms = {m: _by_seed(evaluation, method=m) for m in ("none", "normloss", "weight-decay")}
    assert all(len(arm) == 5 for arm in arms.values())
    normloss_decay = _paired(arms["normloss"], arms["weight-decay"])
    mean, low, high = _interval(normloss_decay)
    _, low90, high90 = _interval(normloss_decay, level=0.90)
    assert low90 > 0.5  # wholly beyond the margin: worse by more than it
    texts = [f"{mean:.2f} points", f"[{_signed(low)}, {_signed(high)}]"]
    texts.append(f"[{_signed(low90)}, {_signed(high90)}]")
    # Holm over the three comparisons, from two-sided paired t-tests.
    pairs = [("normloss", "weight-decay"), ("weight-decay", "none"), ("normloss", "none")]
    differences = [_paired(arms[a], arms[b]) for a, b in pairs]
    p = [stats.ttest_1samp(d, 0).pvalue for d in differences]
    order = np.argsort(p)
    holm, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * p[i]))
        holm[i] = running
    texts.append(f"p = {holm[0]:.3f}")
    for d in differences[1:]:
        m, lo, hi = _interval(d)
        texts.append(f"{abs(m):.2f}")  # "beat `none` by 1.52", "− `none` −0.43"
        texts.append(f"[{_signed(lo)}, {_signed(hi)}]")
    _in_both(*texts)
    # docs/results.md also gives each arm's mean and every seed's difference.
    prose = _prose()["results.md"]
    for arm in arms.values():
        assert (
            f"{100 * np.mean([float(r['final_test_error']) for r in arm.values()]):.2f} %" in prose
        )
    assert ", ".join(_signed(d) for d in normloss_decay[:-1]) in prose


def test_the_convergence_numbers(study):
    """Training cross-entropy averaged over each evaluation run's epochs, paired by seed."""

    def mean_cross_entropy(row):
        path = STUDY / "per-run" / row["run"] / "metrics.csv.gz"
        with gzip.open(path, "rt", newline="") as f:
            return np.mean([float(m["cross_entropy"]) for m in csv.DictReader(f)])

    evaluation = [r for r in study if r["phase"] == "evaluation"]
    arms = {
        m: {s: mean_cross_entropy(r) for s, r in _by_seed(evaluation, method=m).items()}
        for m in ("none", "normloss", "weight-decay")
    }
    texts = []
    for other in ("weight-decay", "none"):
        seeds = sorted(arms[other])
        mean, low, high = _interval([arms["normloss"][s] - arms[other][s] for s in seeds])
        texts += [f"{abs(mean):.3f}", f"[{_signed(low, 3)}, {_signed(high, 3)}]"]
    assert high > 0 > _interval([arms["normloss"][s] - arms["weight-decay"][s] for s in seeds])[2]
    _in_both(*texts)
