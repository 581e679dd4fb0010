"""Public names imported when first used (PEP 562): the one `__getattr__` of the packages whose
names would otherwise import Keras or TensorFlow before the command line needs them.

A table maps each public name to where it lives: `"package.module:attribute"`, or
`"package.module"` for a module itself.
"""

import importlib
import sys


def attributes(package, table):
    """A module-level `__getattr__` for `package` that imports `table`'s names on first use and
    keeps them in the package's namespace.

    Args:
        package: the package's `__name__`.
        table: `{public name: "module:attribute" or "module"}`.

    Returns:
        The `__getattr__` function to assign at the package's top level.

    Example:

    ```python
    __getattr__ = _lazy.attributes(__name__, {"NormLoss": "keras_normloss.regularizers.penalties:NormLoss"})
    ```
    """

    def __getattr__(name):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = table[name].partition(":")
        value = importlib.import_module(module)
        if attribute:
            value = getattr(value, attribute)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
