"""Adding and removing documents: one code path for the HTTP routes and the CLI, and the
service's single background writer.

``add_document`` / ``remove_document`` change the corpus folder and queue the change in the
status book; ``index_pending`` builds the index (``qa.index.build.build_index``, under its
file lock, so the service and ``qa index`` never write at once) and settles the statuses. The
CLI runs it in the foreground; the service hands it to :class:`Writer`, one thread that runs
one build at a time and folds the writes that arrive meanwhile into the next build, while
search keeps answering from the live generation.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import qa
from qa.config import Settings
from qa.encoders.base import Embedder
from qa.errors import QAError, UnknownDocument
from qa.index.build import BuildReport, Progress, build_index
from qa.index.manifest import current_generation, read_manifest
from qa.ingest.readers import Limits
from qa.service.status import StatusBook
from qa.service.uploads import Stored, clean_meta, remove_files, store_file

log = logging.getLogger("qa.service")

class BuildCancelled(QAError):
    """The service stopped during a build; its writes stay pending for the next start."""


def add_document(settings: Settings, filename: str | None, source: BinaryIO,
                 meta: dict[str, str | None], *, replace: bool = False,
                 max_bytes: int | None = None) -> Stored:
    """Store a document in the corpus (atomically, metadata in its sidecar) and queue it."""
    stored = store_file(settings.corpus_dir, filename, source, clean_meta(meta),
                        replace=replace, max_bytes=max_bytes)
    StatusBook(settings.index_dir).queue(stored.doc_id, "add", stored.path, stored.sha256)
    return stored


def indexed_ids(settings: Settings) -> set[str]:
    """The documents of the live generation: its manifest in the index folder, or the one
    published in Milvus (a replica may have no index folder)."""
    if settings.vector_backend == "milvus":
        from qa.index.milvus_registry import current_manifest
        from qa.service.wiring import make_vector_store

        published = current_manifest(make_vector_store(settings))
        return set(published["documents"]) if published else set()
    gen = current_generation(settings.index_dir)
    return set(read_manifest(gen)["documents"]) if gen else set()


def remove_document(settings: Settings, doc_id: str) -> list[str]:
    """Delete a document's files from the corpus and queue its removal from the index."""
    removed = remove_files(settings.corpus_dir, doc_id)
    if not removed and doc_id not in indexed_ids(settings):
        raise UnknownDocument(f"unknown doc_id {doc_id!r}")
    StatusBook(settings.index_dir).queue(doc_id, "remove")
    return removed


def build_in_process(settings: Settings, embedder: Embedder,
                     progress: Progress | None = None) -> BuildReport:
    from qa.service.wiring import make_vector_store

    return build_index(settings.corpus_dir, settings.index_dir, embedder,
                       embed_context=settings.embed_context, batch_size=settings.batch_size,
                       sentence_vectors=settings.sentence_vectors,
                       hnsw_threshold=settings.hnsw_threshold, progress=progress,
                       vector_store=make_vector_store(settings),
                       limits=Limits(max_bytes=settings.max_file_mb * 2**20,
                                     max_pages=settings.max_pages))


def index_pending(book: StatusBook, build: Callable[[], BuildReport],
                  after_build: Callable[[], None] | None = None) -> BuildReport:
    """Build, let ``after_build`` put the new generation live, then settle the statuses of
    the writes the build covered (failed with the reason if the build itself fails)."""
    snapshot = book.begin()
    try:
        report = build()
    except BuildCancelled:
        raise
    except Exception as exc:
        reason = exc.message if isinstance(exc, QAError) else f"{type(exc).__name__}: {exc}"
        book.fail(snapshot, f"the index build failed: {reason}")
        raise
    if after_build is not None:
        after_build()
    book.settle(snapshot, report)
    return report


class ProcessBuild:
    """A build in a child process (``qa.service.build_process``) at low CPU priority
    (``settings.build_nice``), with its own copy of the model: the build takes the cycles
    search leaves idle instead of an equal share (scripts/upload_latency.py measures it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: subprocess.Popen[str] | None = None
        self._cancelled = False

    def __call__(self) -> BuildReport:
        if self._cancelled:
            raise BuildCancelled("the service is stopping")
        # The child imports the very qa package this process runs, wherever it lies.
        root = str(Path(qa.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "qa.service.build_process", str(self.settings.build_nice)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", env={**os.environ, "PYTHONPATH": path})
        out, err = self._proc.communicate(self.settings.model_dump_json())
        if self._cancelled:
            raise BuildCancelled("the service stopped during the build")
        lines = out.strip().splitlines()
        try:
            result = json.loads(lines[-1]) if lines else {}
        except ValueError:
            result = {}
        if "report" in result:
            return BuildReport(**result["report"])
        tail = err.strip().splitlines()
        raise QAError(result.get("error") or (tail[-1] if tail else
                                              f"the build process exited with {self._proc.returncode}"))

    def cancel(self) -> None:
        self._cancelled = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()


class Writer:
    """The service's one writer: a thread that runs ``index_pending`` whenever writes are
    queued. ``idle`` is set while nothing is queued or building (tests wait on it)."""

    def __init__(self, book: StatusBook, build: Callable[[], BuildReport],
                 after_build: Callable[[], None], cancel: Callable[[], None] | None = None) -> None:
        self.book = book
        self.build = build
        self.after_build = after_build
        self.cancel = cancel
        self.idle = threading.Event()
        self.idle.set()
        self._cond = threading.Condition()
        self._dirty = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="qa-writer", daemon=True)
        self._thread.start()
        if self.book.pending():  # writes a stopped service left queued or half-built
            self.request()

    def request(self) -> None:
        """Ask for a build that covers every write queued so far."""
        with self._cond:
            self._dirty = True
            self.idle.clear()
            self._cond.notify()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self.idle.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self.cancel is not None:
            self.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                self._dirty = False
            try:
                report = index_pending(self.book, self.build, self.after_build)
                log.info("index %s: %s", report.generation, report.summary())
            except BuildCancelled:
                return
            except Exception:  # recorded as the documents' reason; the writer lives on
                log.exception("background index build failed")
            with self._cond:
                if not self._dirty:
                    self.idle.set()


def service_writer(settings: Settings, state, in_process: bool) -> Writer:
    """The writer of a running service (``state`` is its ``ServiceState``): builds in a
    low-priority child process, or in this process with the service's own embedder where
    one was handed in (tests, with a fake that a child could not rebuild)."""
    book = StatusBook(settings.index_dir)
    if in_process:
        return Writer(book, lambda: build_in_process(settings, state.embedder), state.load)
    build = ProcessBuild(settings)
    return Writer(book, build, state.load, build.cancel)
