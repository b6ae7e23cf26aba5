"""perfmodel: roofline performance models rendered as numbers and as live Excel formulas.

Light at import: the public API lives in ``perfmodel.api`` and is re-exported lazily here, so
``import perfmodel`` (and ``perfmodel --help``) pull in neither pandas nor jax.
"""

import importlib

__version__ = "0.1.0"


def __getattr__(name):
    api = importlib.import_module("perfmodel.api")
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
