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


LAZY_TABLES = ("_PUBLIC", "_LAZY", "_HOME")  # name -> "module:attribute" (`_lazy.attributes`)


def _lazy_imports(tree):
    """The modules a module's lazy tables name: imported on first use, imports all the same."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            if any(getattr(t, "id", None) in LAZY_TABLES for t in node.targets):
                for value in node.value.values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        found.add(value.value.partition(":")[0])
    return found


def _imports(name):
    """The package modules `name` imports anywhere in its source (at any depth), its lazy
    tables included."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found = {t for t in _lazy_imports(tree) if t in MODULES and t != name}
    for node in ast.walk(tree):
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


# The application: the command line, the training engine (presets, sweeps) and the figures. The
# library is everything a user imports to build a model and train it with `fit`.
APPLICATION = ("keras_normloss.training", "keras_normloss.plotting", "keras_normloss.cli")
ENTRY_POINTS = {"keras_normloss.__main__", "keras_normloss.train"}  # `python -m`, the old facade


def _is_application(name):
    return name in ENTRY_POINTS or any(name == a or name.startswith(a + ".") for a in APPLICATION)


def test_the_library_never_imports_the_application():
    library = [n for n in MODULES if not _is_application(n)]
    assert "keras_normloss.regularizers.penalties" in library and "keras_normloss.norms" in library
    for name in library:
        wrong = sorted(m for m in GRAPH[name] if _is_application(m))
        assert not wrong, f"{name} (library) imports {wrong} (application)"


def test_the_old_re_export_modules_are_gone():
    for old in ("reparam", "reparam_model", "regularizers.py", "constraints.py", "optimizers.py"):
        assert not (PACKAGE / (old if old.endswith(".py") else old + ".py")).is_file(), old


def _subclasses(base):
    found, stack = set(), [base]
    while stack:
        for cls in stack.pop().__subclasses__():
            stack.append(cls)
            if cls.__module__.startswith("keras_normloss."):
                found.add(cls)
    return found


def test_each_keras_concept_lives_in_its_folder():
    """Every regularizer of the package in `regularizers/`, constraint in `constraints/`, wrapper
    layer in `layers/`, optimizer in `optimizers/` (what `keras.src` does, one folder each)."""
    import keras

    import keras_normloss  # noqa: F401  (imports every public object)

    folders = {
        keras.regularizers.Regularizer: "keras_normloss.regularizers.",
        keras.constraints.Constraint: "keras_normloss.constraints.",
        keras.layers.Wrapper: "keras_normloss.layers.",
        keras.optimizers.Optimizer: "keras_normloss.optimizers.",
    }
    for base, folder in folders.items():
        classes = _subclasses(base)
        assert classes, base
        for cls in classes:
            assert cls.__module__.startswith(folder), f"{cls.__name__} in {cls.__module__}"
