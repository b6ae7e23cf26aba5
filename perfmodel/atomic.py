"""Atomic output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import SpecError


def check_output(path: Path, suffix: str | tuple | None = None) -> Path:
    """Refuse output paths that cannot be written (or, with ``suffix``, that name another file
    type), before any work is done."""
    path = Path(path)
    ok = (suffix,) if isinstance(suffix, str) else suffix
    if ok and path.suffix.lower() not in ok and not path.is_dir():
        raise SpecError(f"output {path}: expected a {ok[0]} file name (this writes {ok[0]}); "
                        f"use e.g. {path.with_suffix(ok[0])}.")
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SpecError(f"output {path}: is a directory; give a file name such as {path / 'out.xlsx'}.")
    if parent.exists() and not parent.is_dir():
        raise SpecError(f"output {path}: its parent {parent} is a regular file, not a directory.")
    if not parent.exists():
        raise SpecError(f"output {path}: directory {parent} does not exist; create it first "
                        f"(mkdir -p {parent}) or choose another path.")
    return path


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success."""
    path = check_output(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
