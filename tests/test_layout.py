"""The package's layout: module sizes, and an import graph without cycles (function-level
imports included), read from the source with `ast`."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_normloss"
MAX_LINES = 500


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name):
    """The package modules `name` imports anywhere in its source (at any depth)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def _parents(name):
    """A module imports its packages' `__init__` first; that is not an edge of ours."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


GRAPH = {name: _imports(name) - _parents(name) for name in MODULES}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_500_lines(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_every_module_says_its_job_in_its_first_line():
    for name, path in MODULES.items():
        first = path.read_text().lstrip().splitlines()[0] if path.read_text().strip() else '"""'
        assert first.startswith('"""') and len(first) > 10, name


def test_the_import_graph_has_no_cycle():
    """Among the modules below the package's own `__init__` (which only re-exports)."""
    graph = {
        n: {m for m in deps if m != "keras_normloss"}
        for n, deps in GRAPH.items()
        if n != "keras_normloss"
    }
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_attach_depends_on_the_table_never_the_reverse():
    assert "keras_normloss.methods.table" in GRAPH["keras_normloss.attach"] | {
        m for d in GRAPH["keras_normloss.attach"] for m in GRAPH[d]
    }
    methods = [n for n in MODULES if n.startswith("keras_normloss.methods")]
    above = {"keras_normloss.attach", "keras_normloss.training", "keras_normloss.cli"}
    for name in methods:
        assert not GRAPH[name] & above, name
        assert not any(m.startswith("keras_normloss.training") for m in GRAPH[name]), name
