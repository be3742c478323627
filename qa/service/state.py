"""What the running service holds: the embedder, the live index and its searcher.

Loading happens off the request path (the app's lifespan starts it), so /healthz answers at
once and /readyz says 503 until the model and the index are in memory. When ``qa index``
switches the index to a new generation, or a file of the served generation changes on disk,
the next request reloads: a removed document stops answering without a restart.

Generations are retired, not yanked: each request holds a lease on the searcher it uses
(``lease``), and a replaced generation is closed (every thread's SQLite connection, and its
shared lock, which lets the next build delete it) only when its last request is done. A new
generation that cannot be served (another embedder, a damaged file) leaves the old one in
service if it is intact, and /readyz says so with the error; if nothing can be served, every
route answers 503 with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from qa.config import Settings
from qa.encoders.base import Embedder
from qa.errors import IndexNotReady, QAError
from qa.index.load import open_index
from qa.retrieve.search import Searcher
from qa.service.pointer import LocalPointer, PublishedPointer, Stamp

log = logging.getLogger("qa.api")


@dataclass(eq=False)
class _Served:
    searcher: Searcher
    stamp: Stamp
    refs: int = 0
    retired: bool = False
    closed: bool = False

    @property
    def name(self) -> str:
        return self.searcher.index.path.name


class ServiceState:
    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 reload_check_s: float = 0.5) -> None:
        self.settings = settings
        # How often a request may look at index/CURRENT for a new generation; tests use 0.
        self.reload_check_s = reload_check_s
        self.embedder = embedder
        self.searcher: Searcher | None = None  # the generation served now
        self.error: QAError | None = None  # why nothing can be served
        self.reload_error: QAError | None = None  # why CURRENT is not the one served
        self.loading = False
        self.started_at = time.time()
        self.ready_at: float | None = None
        self._lock = threading.Lock()
        self._refs_lock = threading.Lock()
        self._served: _Served | None = None
        self._failed: tuple[str | None, Stamp] | None = None
        self._checked_at = 0.0
        self._source = self._pointer_source()

    def _pointer_source(self) -> LocalPointer | PublishedPointer:
        """Where the live generation is named: index/CURRENT, or the Milvus registry."""
        if self.settings.vector_backend != "milvus":
            return LocalPointer(self.settings.index_dir)
        from qa.index.milvus_registry import PointerReader
        from qa.service.wiring import make_vector_store

        reader = PointerReader(make_vector_store(self.settings))
        return PublishedPointer(reader, lambda: self.reload_check_s, reader.close)

    def _pointer(self) -> str | None:
        return self._source.current()

    def _stamp(self, gen: str | None) -> Stamp:
        return self._source.stamp(gen)

    # -- loading ------------------------------------------------------------------------
    def load(self) -> None:
        """Load the embedder (once) and the live index; remember the error if any."""
        with self._lock:
            self._load_locked()

    def reload_if_stale(self) -> None:
        """Reload unless another request already did while this one waited for the lock."""
        with self._lock:
            if self._needs_load():
                self._load_locked()

    def _load_locked(self) -> None:
        self.loading = True
        pointer = self._pointer()
        stamp = self._stamp(pointer)
        try:
            if self.embedder is None:
                from qa.encoders.batching import MicroBatchingEmbedder
                from qa.service.wiring import make_embedder

                # Concurrent searches share encoder calls (qa.encoders.batching); the
                # searcher's query cache sits above this.
                self.embedder = MicroBatchingEmbedder(make_embedder(self.settings))
            from qa.index.vectors.faiss import serve_single_threaded
            from qa.service.wiring import make_vector_store

            serve_single_threaded()
            index = open_index(self.settings.index_dir, self.embedder,
                               make_vector_store(self.settings),
                               verify=self.settings.index_verify)
            try:
                searcher = Searcher(index, self.embedder)
                # The first query pays for lazy initialisation (torch kernels, jieba);
                # pay it here, before /readyz says ready.
                searcher.search("预热 warm-up", top_k=1)
            except BaseException:
                index.close()
                raise
            self._swap(searcher, self._stamp(index.path.name)
                       if index.path.name != pointer else stamp)
        except QAError as exc:
            self._failed_load(exc, pointer, stamp)
        except Exception:  # keep serving /healthz; report it on /readyz, details in the log
            log.exception("loading failed")
            self._failed_load(IndexNotReady("loading the model or the index failed; the "
                                            "server log has the details"), pointer, stamp)
        finally:
            self.loading = False
            self._checked_at = time.monotonic()

    def _swap(self, searcher: Searcher, stamp: Stamp) -> None:
        with self._refs_lock:
            old = self._served
            self._served = _Served(searcher, stamp)
            self.searcher = searcher
        self.error = self.reload_error = self._failed = None
        if self.ready_at is None:
            self.ready_at = time.time()
        m = searcher.index.manifest
        log.info("serving index generation %s (%s documents, %s chunks)%s",
                 searcher.index.path.name, m["counts"]["documents"], m["counts"]["chunks"],
                 f", switched from {old.name}" if old is not None else "")
        if old is not None:
            self._retire(old)

    def _failed_load(self, exc: QAError, pointer: str | None, stamp: Stamp) -> None:
        self._failed = (pointer, stamp)
        served = self._served
        if served is not None and served.name != pointer and not self._changed(served):
            self.reload_error = exc
            log.warning("still serving generation %s: the new one cannot be served: %s",
                        served.name, exc.message)
            return
        with self._refs_lock:
            self._served, self.searcher = None, None
        if served is not None:
            self._retire(served)
        self.error, self.reload_error = exc, None
        log.warning("not ready: %s", exc.message)

    # -- generations in use -------------------------------------------------------------
    def _changed(self, served: _Served) -> bool:
        return self._stamp(served.name) != served.stamp

    def _retire(self, served: _Served) -> None:
        with self._refs_lock:
            served.retired = True
            close = served.refs == 0 and not served.closed
            served.closed = served.closed or close
        if close:
            served.searcher.index.close()

    @contextlib.contextmanager
    def lease(self) -> Iterator[Searcher]:
        """The served searcher, kept open until the block ends even if a reload replaces
        it meanwhile; raises the reason when nothing is served."""
        with self._refs_lock:
            served = self._served
            if served is not None:
                served.refs += 1
        if served is None:
            raise self._not_ready()
        try:
            yield served.searcher
        finally:
            with self._refs_lock:
                served.refs -= 1
                close = served.retired and served.refs == 0 and not served.closed
                served.closed = served.closed or close
            if close:
                served.searcher.index.close()

    def close(self) -> None:
        """Retire the served generation (at shutdown)."""
        with self._refs_lock:
            served, self._served, self.searcher = self._served, None, None
        if served is not None:
            self._retire(served)
        self._source.close()

    def start_background_load(self) -> threading.Thread:
        self.loading = True
        thread = threading.Thread(target=self.load, name="qa-load", daemon=True)
        thread.start()
        return thread

    def _needs_load(self) -> bool:
        pointer = self._pointer()
        served = self._served
        if pointer is None:
            return False
        if self._failed == (pointer, self._stamp(pointer)):
            # That generation failed as it is; retry when it or CURRENT changes, or when the
            # generation still served changes under us.
            return served is not None and self._changed(served)
        return served is None or pointer != served.name or self._changed(served)

    def stale(self) -> bool:
        """Whether ``qa index`` has switched the live generation, or the served one's files
        changed, since it was loaded (checked at most every ``reload_check_s``; a file read
        and a dozen stat calls, fine on the event loop)."""
        now = time.monotonic()
        if now - self._checked_at < self.reload_check_s or self.loading:
            return False
        self._checked_at = now
        return self._needs_load()

    def _not_ready(self) -> QAError:
        if self.loading:
            return IndexNotReady("the service is still loading the model and the index; "
                                 "retry in a few seconds (GET /readyz says when it is ready)")
        if self.error is not None:
            return self.error
        return IndexNotReady("no index loaded: build it with `qa index`")

    def current(self) -> Searcher:
        """The loaded searcher, or the reason there is none."""
        if self.searcher is not None:
            return self.searcher
        raise self._not_ready()

    def get_searcher(self) -> Searcher:
        """The searcher of the live generation, reloading first if it changed (blocking)."""
        if self.stale():
            self.reload_if_stale()
        return self.current()

    def pointer(self) -> str | None:
        """The generation CURRENT names now (for /readyz)."""
        return self._pointer()
