"""The fast tier's markers are where they must be: a test that starts a Python process (5-8 s
of TensorFlow or JAX start each) is marked `subprocess`, read from the tests' source with `ast`,
so that `pytest -m "not slow and not subprocess and not end_to_end"` stays fast as tests are
added."""

import ast
import pathlib
import re

import pytest

TESTS = pathlib.Path(__file__).parent
# What starts a process: the standard library, and this suite's helpers around it.
STARTS_A_PROCESS = re.compile(
    r"subprocess\.(run|Popen|check_output|call)\(|\bstart_train\(|\brun_script\(|"
    r"\b_start_train\(|nbclient\.|multiprocessing\.get_context\(\"spawn\"\)"
)
# A sweep runs each run in a spawned process, unless the test swaps in `in_process.InProcess`.
SWEEPS = re.compile(r"\bsweep\.(main|sweep)\(")


def _marks(decorators, source):
    return {
        m.group(1)
        for d in decorators
        for m in re.finditer(r"pytest\.mark\.(\w+)", ast.get_source_segment(source, d) or "")
    }


def _module_marks(tree, source):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return set(re.findall(r"pytest\.mark\.(\w+)", ast.get_source_segment(source, node)))
    return set()


def _tests_that_start_a_process(path):
    """(test name, its marks) of every test whose body, or a fixture or helper of its module
    that it reaches, starts a process."""
    source = path.read_text()
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    memo = {}

    def starts(name, seen=()):
        if name in memo:
            return memo[name]
        node = functions.get(name)
        if node is None or name in seen:
            return False
        text = ast.get_source_segment(source, node)
        used = [a.arg for a in node.args.args] + re.findall(r"\b(_\w+)\(", text)
        spawns = bool(SWEEPS.search(text)) and "InProcess" not in text
        memo[name] = (
            bool(STARTS_A_PROCESS.search(text))
            or spawns
            or any(starts(other, (*seen, name)) for other in used if other != name)
        )
        return memo[name]

    module = _module_marks(tree, source)
    return [
        (name, _marks(node.decorator_list, source) | module)
        for name, node in functions.items()
        if name.startswith("test_") and starts(name)
    ]


@pytest.mark.parametrize(
    "path", sorted(set(TESTS.glob("test_*.py")) - {pathlib.Path(__file__)}), ids=lambda p: p.name
)
def test_a_test_that_starts_a_process_is_marked_subprocess(path):
    unmarked = [n for n, marks in _tests_that_start_a_process(path) if "subprocess" not in marks]
    assert not unmarked, f"mark these @pytest.mark.subprocess: {unmarked}"


def test_the_scan_sees_a_process_started_through_a_helper(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import subprocess\n"
        "def _helper():\n    subprocess.run(['true'])\n"
        "def test_a():\n    _helper()\n"
        "def test_b():\n    pass\n"
    )
    assert _tests_that_start_a_process(tmp_path / "test_x.py") == [("test_a", set())]
