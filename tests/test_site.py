"""The documentation site (issue 29): it builds with no warning, every public name has its section
in the generated API reference, and the facts of the pages that drifted before are read from the
code they describe (the first run's line, the datasets' sizes, the README's example and links)."""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("site_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built with mkdocs.yml's strict settings (a warning fails the build)."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    return out


@pytest.mark.subprocess
def test_the_site_builds_with_every_page_and_no_warning(site):
    for page in ("getting-started", "your-model", "methods", "models", "training", "results",
                 "architecture", "api"):  # fmt: skip
        assert (site / page / "index.html").is_file(), page
    # Every notebook is linked from Getting started, and the site carries it.
    started = (DOCS / "getting-started.md").read_text()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"](notebooks/{notebook.name})" in started, notebook.name
        assert (site / "notebooks" / notebook.name).is_file(), notebook.name


@pytest.mark.subprocess
def test_every_public_name_has_its_section_in_the_api_reference(site):
    import keras_normloss
    from keras_normloss import methods, optimizers

    html = (site / "api" / "index.html").read_text()

    def heading(path):
        return re.search(rf">\s*{re.escape(path)}\s*<", html) is not None

    for name in keras_normloss.__all__:
        assert heading(f"keras_normloss.{name}"), name
    # A module's section holds its own public names.
    for module, names in (("methods", methods.__all__), ("optimizers", optimizers.__all__)):
        for name in names:
            assert heading(f"keras_normloss.{module}.{name}"), (module, name)
    # The text is the docstrings'.
    assert "Norm Loss: pulls every output channel" in html


def test_the_api_reference_is_generated_from_all_not_written():
    page = _hooks().api_page()
    import keras_normloss

    for name in keras_normloss.__all__:
        assert f"keras_normloss.{name}" in page, name
    assert not (DOCS / "api.md").exists()  # generated at build time only


def test_the_first_runs_line_is_the_line_train_prints(tmp_path, monkeypatch):
    from keras_normloss.training import messages, presets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "first" / "tensorboard").mkdir(parents=True)  # as a finished run has

    # Seed 0's numbers, as the preset records them.
    run_here = presets.get("fashion-mnist-small").run_here
    assert "10.63 % (validation 10.13 %) with seed 0" in run_here
    results = dict(final_test_error=0.1063, final_validation_error=0.1013, epochs=8,
                   wall_seconds=110, best_test_error=0.1063, best_epoch=8)  # fmt: skip
    outputs = ["results.json", "metrics.csv", "dynamics.csv", "model.keras", "tensorboard/"]
    line = messages.summary_line(results, "runs/first")
    assert line.endswith(f"outputs in runs/first ({', '.join(outputs)})")
    for page in (ROOT / "README.md", DOCS / "getting-started.md"):
        assert line in page.read_text(), page
    assert presets.get("fashion-mnist-small").epochs == 8


def test_the_datasets_table_states_the_registrys_sizes():
    from keras_normloss.data import registry

    text = (DOCS / "training.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    checked = 0
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if not re.fullmatch(r"\d+×\d+×\d+", cells[1]):  # sizes in words: `folder`, tfds
            continue
        for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
            entry = registry.DATASETS.get(name)
            if entry is None or entry.image_shape is None:
                continue
            assert cells[1] == "×".join(map(str, entry.image_shape)), (name, cells[1])
            checked += 1
    assert checked >= 6
    assert text.count(f"default {registry.DEFAULT_IMAGE_SIZE})") == 2  # folder and tfds rows


def test_the_readmes_example_runs_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    example = readme.split("## In your own model", 1)[1].split("```python", 1)[1].split("```")[0]
    assert len(example.strip().splitlines()) <= 16
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    report = namespace["report"]
    assert len(namespace["resnet"].losses) == 54  # 53 convolutions and the classifier
    assert "conv1_conv" in str(report)
    assert len(namespace["model"].losses) == 2
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    assert len(readme.splitlines()) <= 120


def test_the_methods_page_has_one_row_per_method_with_its_kind_and_factor():
    from keras_normloss import methods

    text = (DOCS / "methods.md").read_text()
    shown = {"epoch-projection": "callback", "none": ""}  # the page's words for two kinds
    for name in methods.names():
        rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        spec = methods.get(name)
        assert cells[1] == shown.get(spec.kind, spec.kind), (name, cells[1])
        assert cells[3] == (spec.factor or ""), (name, cells[3])


def test_every_page_has_one_title():
    for page in sorted(DOCS.glob("*.md")):
        fence, titles = False, []
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                fence = not fence
            elif not fence and line.startswith("# "):
                titles.append(line)
        # architecture.md is ARCHITECTURE.md, included whole (its title comes with it).
        assert len(titles) == (0 if page.name == "architecture.md" else 1), (page.name, titles)


def _shown_parameters(text):
    """`a, b=1, *, c="x"` -> [("a", None), ("b", "1"), ("c", '"x"')] (a bare `*` dropped)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{" and 1 or (ch in ")]}" and -1 or 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    shown = []
    for part in (p.strip() for p in parts):
        if part and part not in ("*", "**kwargs"):
            name, _, default = part.partition("=")
            shown.append((name.strip(), default.strip() or None))
    return shown


def test_the_signatures_on_your_model_page_are_the_codes():
    """Each `Name(...)` of the table of names shows parameters the code has, in its order, with
    its defaults (it may leave some out)."""
    import inspect

    import keras_normloss
    from keras_normloss import methods

    text = (DOCS / "your-model.md").read_text()
    table = text.split("| name | what it is |", 1)[1].split("\n\n", 1)[0]
    names_column = "\n".join(row.split(" | ")[0] for row in table.splitlines()[2:])
    checked = 0
    for name, inside in re.findall(r"`(?:keras_normloss\.\w+\.)?(\w+)\(([^`]*)\)`", names_column):
        target = getattr(keras_normloss, name, None) or getattr(methods, name, None)
        if target is None or not callable(target):
            continue
        real = list(inspect.signature(target).parameters.values())
        names = [p.name for p in real]
        position = -1
        for shown, default in _shown_parameters(inside):
            assert shown in names, (name, shown)
            assert names.index(shown) > position, (name, "order", shown)
            position = names.index(shown)
            actual = real[position].default
            if default is None:
                assert actual is inspect.Parameter.empty, (name, shown, actual)
            else:
                assert eval(default) == actual, (name, shown, default, actual)  # noqa: S307
        checked += 1
    assert checked >= 15


def test_the_presets_table_states_the_presets_settings():
    from keras_normloss.data import registry
    from keras_normloss.training import presets

    text = (DOCS / "training.md").read_text()
    table = text.split("| preset | dataset | model |", 1)[1].split("\n\n", 1)[0]
    seen = set()
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in (n.strip() for n in cells[0].split(",")):
            preset = presets.get(name)
            seen.add(name)
            assert cells[2].startswith(preset.model), (name, cells[2])
            assert cells[3] == str(preset.batch_size), (name, cells[3])
            assert cells[4].startswith(f"{preset.lr:g}"), (name, cells[4])
            assert cells[5] == str(preset.epochs), (name, cells[5])
            augment = preset.augment or registry.default_augment(preset.dataset)
            assert cells[6].startswith(augment or "its own"), (name, cells[6])
            assert float(cells[8]) == preset.weight_decay, (name, cells[8])
            assert float(cells[9]) == preset.normloss_factor, (name, cells[9])
    assert seen == set(presets.PRESETS)
