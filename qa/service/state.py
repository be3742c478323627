"""What the running service holds: the embedder, the live index and its searcher.

Loading happens off the request path (the app's lifespan starts it), so /healthz answers at
once and /readyz says 503 until the model and the index are in memory. When ``qa index``
switches the index to a new generation, the next request picks it up: a removed document
stops answering without a restart.
"""

from __future__ import annotations

import logging
import threading
import time

from qa.config import Settings
from qa.encoders.base import Embedder
from qa.errors import IndexNotReady, QAError
from qa.index.load import open_index
from qa.retrieve.search import Searcher

log = logging.getLogger("qa.api")


class ServiceState:
    def __init__(self, settings: Settings, embedder: Embedder | None = None,
                 reload_check_s: float = 0.5) -> None:
        self.settings = settings
        # How often a request may look at index/CURRENT for a new generation; tests use 0.
        self.reload_check_s = reload_check_s
        self.embedder = embedder
        self.searcher: Searcher | None = None
        self.error: QAError | None = None
        self.loading = False
        self.started_at = time.time()
        self.ready_at: float | None = None
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._checked_at = 0.0

    def _pointer(self) -> str | None:
        try:
            return (self.settings.index_dir / "CURRENT").read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def load(self) -> None:
        """Load the embedder (once) and the live index; remember the error if any."""
        with self._lock:
            self.loading = True
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
                                   make_vector_store(self.settings))
                old = self.searcher
                searcher = Searcher(index, self.embedder)
                # The first query pays for lazy initialisation (torch kernels, jieba);
                # pay it here, before /readyz says ready.
                searcher.search("预热 warm-up", top_k=1)
                self.searcher = searcher
                self._generation = index.path.name
                self.error = None
                if self.ready_at is None:
                    self.ready_at = time.time()
                if old is not None:
                    old.index.store.close()
                log.info("serving index generation %s (%s documents, %s chunks)%s",
                         index.path.name, index.manifest["counts"]["documents"],
                         index.manifest["counts"]["chunks"],
                         f", switched from {old.index.path.name}" if old is not None else "")
            except QAError as exc:
                self.error = exc
                log.warning("not ready: %s", exc.message)
            except Exception as exc:  # keep serving /healthz; report it on /readyz
                log.exception("loading failed")
                self.error = QAError(f"loading failed: {exc}")
            finally:
                self.loading = False
                self._checked_at = time.monotonic()

    def start_background_load(self) -> threading.Thread:
        self.loading = True
        thread = threading.Thread(target=self.load, name="qa-load", daemon=True)
        thread.start()
        return thread

    def stale(self) -> bool:
        """Whether ``qa index`` has switched the live generation since it was loaded (checked
        at most every ``reload_check_s``; a cheap file read, fine on the event loop)."""
        now = time.monotonic()
        if now - self._checked_at < self.reload_check_s or self.loading:
            return False
        self._checked_at = now
        pointer = self._pointer()
        return pointer is not None and pointer != self._generation

    def current(self) -> Searcher:
        """The loaded searcher, or the reason there is none."""
        if self.searcher is not None:
            return self.searcher
        if self.loading:
            raise IndexNotReady("the service is still loading the model and the index; "
                                "retry in a few seconds (GET /readyz says when it is ready)")
        if self.error is not None:
            raise self.error
        raise IndexNotReady("no index loaded: build it with `qa index`")

    def get_searcher(self) -> Searcher:
        """The searcher of the live generation, reloading first if it changed (blocking)."""
        if self.stale():
            self.load()
        return self.current()
