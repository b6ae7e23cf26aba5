"""perfmodel: roofline performance models rendered as numbers and as live Excel formulas.

Light at import: the public API lives in ``perfmodel.api`` and is re-exported lazily here, so
``import perfmodel`` (and ``perfmodel --help``) pull in neither pandas nor jax.
"""

import importlib
import importlib.util

__version__ = "0.1.0"


def __getattr__(name):
    # ``from . import units`` asks the package for the submodule first; answering by importing
    # the API would import specs again half-way through its own import (a cycle).
    if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
    api = importlib.import_module("perfmodel.api")
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
