"""What this machine has: an installed library's version, and whether JAX sees a GPU. Imports
nothing of the package, so that both backends' distribution modules can use it."""

import importlib.metadata


def jax_sees_a_gpu():
    """True if JAX sees a GPU (its platform name is "gpu" whatever the vendor)."""
    import jax

    return any(d.platform == "gpu" for d in jax.devices())


def installed_version(distribution_name):
    """The installed version of a Python distribution (`"jaxlib"`), or None if it is absent."""
    try:
        return importlib.metadata.version(distribution_name)
    except importlib.metadata.PackageNotFoundError:
        return None
