"""MkDocs hooks of the documentation site: the API reference page generated from the package's
`__all__` lists (read with `ast`, without importing Keras or TensorFlow), and the notebooks added
to the site as files so that pages can link them.

Every name of `keras_normloss.__all__` gets a section: a class or function its own, a module its
own with every name of that module's `__all__`. The sections are `mkdocstrings` directives
(`::: dotted.path`), so the text is the docstrings'; nothing here is written by hand.
"""

import ast
import pathlib

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "keras_normloss"
# Tables of lazily imported names (`keras_normloss._lazy.attributes`): name -> "module:attribute".
LAZY_TABLES = ("_PUBLIC", "_LAZY", "_HOME")


def module_path(dotted):
    base = ROOT / pathlib.Path(*dotted.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def public_names(dotted):
    """`dotted`'s `__all__` as {name: the dotted path of what it is}, resolved statically."""
    tree = ast.parse(module_path(dotted).read_text())
    exported, lazy, imported = [], {}, {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = getattr(node.targets[0], "id", None)
            if target == "__all__":
                exported = ast.literal_eval(node.value)
            elif target in LAZY_TABLES and isinstance(node.value, ast.Dict):
                lazy = ast.literal_eval(node.value)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    resolved = {}
    for name in exported:
        if name in lazy:
            module, _, attribute = lazy[name].partition(":")
            resolved[name] = f"{module}.{attribute}" if attribute else module
        else:
            resolved[name] = imported.get(name, f"{dotted}.{name}")
    return resolved


def _is_module(dotted):
    base = ROOT / pathlib.Path(*dotted.split("."))
    return base.is_dir() or base.with_suffix(".py").is_file()


def resolve(dotted):
    """Where `dotted` is defined: through lazy tables and re-exports, to the defining module."""
    module, _, name = dotted.rpartition(".")
    if _is_module(dotted) or not _is_module(module):
        return dotted
    target = public_names(module).get(name)
    return dotted if target in (None, dotted) else resolve(target)


def _directive(path, heading, **options):
    lines = [f"::: {path}", "    options:", f'      heading: "{heading}"']
    lines += [f'      toc_label: "{heading}"']
    for key, value in options.items():
        lines.append(f"      {key}: {value}")
    return [*lines, ""]


def api_page():
    """The API reference's Markdown."""
    top = public_names(PACKAGE)
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings of every name in `keras_normloss.__all__`; a module's "
        "section lists the names of its own `__all__` (or, without one, its public names).",
        "",
        "## `keras_normloss`",
        "",
    ]
    modules = []
    for name, path in sorted(top.items(), key=lambda item: item[0].lower()):
        path = resolve(path)
        if _is_module(path):
            modules.append((name, path))
        else:
            lines += _directive(path, f"keras_normloss.{name}")
    for name, path in modules:
        members = public_names(path)
        lines += [f"## `keras_normloss.{name}`", ""]
        if not members:  # no __all__: the module's public names, as mkdocstrings finds them
            lines += [f"::: {path}", "    options:", "      show_root_heading: false", ""]
            continue
        lines += [
            f"::: {path}",
            "    options:",
            "      show_root_heading: false",
            "      members: false",
            "",
        ]
        for member, target in members.items():
            lines += _directive(resolve(target), f"keras_normloss.{name}.{member}")
    return "\n".join(lines)


def on_files(files, config):
    files.append(File.generated(config, "api.md", content=api_page()))
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
