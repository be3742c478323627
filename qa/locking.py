"""One advisory inter-process lock, shared by the index build and the model conversion."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (no-op where fcntl is missing: there the
    callers' atomic renames alone keep readers safe)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SharedLock:
    """A shared advisory lock held on an open file until ``release``: a process using an
    index generation holds one on its manifest, and a build deletes only generations it can
    lock exclusively (``try_exclusive``), so no process loses files it still reads."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "rb")  # held until release()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        fcntl.flock(self._handle, fcntl.LOCK_SH)

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # closing the file drops its lock


@contextlib.contextmanager
def try_exclusive(path: Path) -> Iterator[bool]:
    """Yields True while holding an exclusive lock on ``path`` taken without waiting, False
    if another process holds a lock on it (or the file is gone: nothing to protect then,
    True)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: never delete what may be in use
        yield False
        return
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        yield True
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
