"""Atomic output: write to a temporary file beside the target, then rename over it.

The temporary file is ``.NAME.XXXXXXXX.tmp`` in the target's directory. It is removed when the
write fails or is interrupted (Ctrl-C, SIGTERM: the CLI turns both into exceptions); a run
killed outright (kill -9, power loss) cannot clean up, so every writer first removes the
leftovers of its own target that are older than the current run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import time
from pathlib import Path

from .errors import SpecError


def check_output(path: Path, suffix: str | tuple | None = None) -> Path:
    """Refuse output paths that cannot be written (or, with ``suffix``, that name another file
    type), before any work is done."""
    if isinstance(path, str) and not path.strip():
        raise SpecError("output '': an empty file name; give one such as out.xlsx, or leave "
                        "the option out.")
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
    if not str(path) or path.name in ("", ".", ".."):
        raise SpecError(f"output {str(path)!r}: not a file name; give one such as out.xlsx.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError(f"output {path}: directory {parent} is not writable (permission denied); "
                        f"choose another path.")
    return path


# when this run started (the module is imported at its start): temporary files older than it
# belong to runs that are over
RUN_STARTED = time.time()
# temporary files this process has open: an interrupt that lands inside a writer's own
# cleanup (between its checks) still has them removed by the CLI's handler (cleanup())
_LIVE: set[str] = set()


def cleanup() -> None:
    """Remove every temporary file this process still holds (the CLI calls it on an interrupt)."""
    for tmp in list(_LIVE):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _LIVE.discard(tmp)
_TMP_SUFFIX = ".tmp"


def remove_stale(path: Path) -> list[Path]:
    """Remove ``.NAME.*.tmp`` files of ``path`` (this module's temporary files for that target)
    last modified before this run started; return them."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}{re.escape(_TMP_SUFFIX)}$")
    gone = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return gone
    for e in entries:
        if not pattern.match(e.name):
            continue
        try:
            if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < RUN_STARTED:
                os.unlink(e.path)
                gone.append(Path(e.path))
        except OSError:
            pass  # another process removed it, or it is not ours to remove
    return gone


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.
    An OS error while writing (permission, a full disk, a read-only or special file system)
    becomes a SpecError naming the target; an interrupt removes the temporary file."""
    path = check_output(path)
    remove_stale(path)
    umask = os.umask(0)
    os.umask(umask)
    tmp = None
    try:
        with _signals_held():  # an interrupt between creating the file and naming it: none
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX,
                                           dir=path.parent or ".")
            except OSError as e:
                raise output_error(path, e) from None
            os.close(fd)
            _LIVE.add(tmp)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
            os.replace(tmp, path)
        except Exception as e:
            err = os_error(e)
            if err is None:
                raise
            raise output_error(path, err) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            _LIVE.discard(tmp)


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM for the block (delivered as it ends), where the OS allows."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask, or not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def os_error(e: BaseException | None) -> OSError | None:
    """The OSError behind ``e`` (writers such as xlsxwriter wrap it in their own exception)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            return e
        inner = next((a for a in getattr(e, "args", ()) if isinstance(a, OSError)), None)
        e = inner or e.__cause__ or e.__context__
    return None


def output_error(path, e: OSError) -> SpecError:
    why = e.strerror or str(e)
    hint = {28: "free some space or write elsewhere", 27: "the file is over a size limit; "
            "write elsewhere", 13: "check the permissions or write elsewhere",
            30: "the file system is read-only; write elsewhere"}.get(e.errno, "choose another path")
    return SpecError(f"output {path}: cannot be written ({why}); {hint}.")
