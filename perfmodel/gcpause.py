"""Pausing Python's cyclic garbage collector while a large structure is built.

Loading 100,000 ops makes millions of objects, none of them garbage yet; with the collector
running, each of its full passes rescans everything built so far, and loading takes two to
three times as long. Reference counting still frees what is dropped; cycles wait until the
block ends.
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
