"""Which generation is live, as the service's reload checks see it: the index folder's
``CURRENT`` file, or (Milvus backend) the ``CURRENT`` row of the Milvus registry, so that a
replica with no index folder still moves to a new generation without a restart."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qa.index.manifest import generation_name

log = logging.getLogger("qa.api")
Stamp = tuple[tuple[str, int, int, int], ...] | None


class LocalPointer:
    """``index/CURRENT``, and the files of a generation as a stamp."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir

    def current(self) -> str | None:
        try:
            return generation_name((self.index_dir / "CURRENT").read_bytes())
        except OSError:
            return None

    def stamp(self, gen: str | None) -> Stamp:
        """Name, size, mtime and inode of every file of a generation: any write, truncation
        or replacement changes it. A dozen stat calls, cheap enough for every reload check."""
        if gen is None:
            return None
        try:
            with os.scandir(os.path.join(self.index_dir, gen)) as it:
                return tuple(sorted((e.name, (s := e.stat()).st_size, s.st_mtime_ns, s.st_ino)
                                    for e in it))
        except OSError:
            return None

    def close(self) -> None:
        pass


class PublishedPointer:
    """The Milvus registry's ``CURRENT``, read off the request path: a check returns the
    last value read and, when it is older than ``interval_s()``, starts one background read
    (the checks run on the event loop; a Milvus round trip must not block it). The first
    check reads in the caller. A published generation never changes, so its stamp is its
    name."""

    def __init__(self, read: Callable[[], str | None], interval_s: Callable[[], float],
                 close: Callable[[], None] | None = None) -> None:
        self._read, self._interval, self._close = read, interval_s, close
        self._value: str | None = None
        self._at: float | None = None
        self._busy = threading.Lock()

    def _refresh(self) -> None:
        try:
            value = self._read()
        except Exception as exc:  # noqa: BLE001 - keep the last value; the next check retries
            log.warning("cannot read the live generation from Milvus: %s: %s",
                        type(exc).__name__, exc)
        else:
            self._value = value
        finally:
            self._at = time.monotonic()
            self._busy.release()

    def current(self) -> str | None:
        interval = self._interval()
        if self._at is None or interval <= 0:
            self._busy.acquire()  # waits for a background read in flight
            self._refresh()
        elif time.monotonic() - self._at >= interval and self._busy.acquire(blocking=False):
            threading.Thread(target=self._refresh, name="qa-pointer", daemon=True).start()
        return self._value

    def stamp(self, gen: str | None) -> Stamp:
        return None if gen is None else ((gen, 0, 0, 0),)

    def close(self) -> None:
        if self._close is not None:
            with self._busy:
                self._close()
