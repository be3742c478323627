"""Each document's status: ``queued``, ``indexing``, ``ready`` or ``failed`` (with a reason).

Only what the folders cannot tell is written down, in ``index/documents-status.json``
(replaced atomically, under a lock file shared by the service and the CLI): pending writes
and failures. The rest is derived, so it survives a restart: a document the live index holds
is ready; a corpus file it does not hold is queued (the next build takes it) unless a failure
is recorded for it.

Every pending entry carries a token. A build notes the tokens it starts with and settles only
those, so an upload that lands while a build runs stays queued for the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from qa.index.build import BuildReport
from qa.locking import file_lock
from qa.service.uploads import META_SUFFIX, supported

STATUS_FILE = "documents-status.json"
PENDING = ("queued", "indexing")
Status = Literal["queued", "indexing", "ready", "failed"]
Entries = dict[str, dict[str, Any]]


@dataclass
class DocStatus:
    doc_id: str
    status: Status
    reason: str | None = None
    path: str | None = None
    sha256: str | None = None
    meta: dict[str, str] = field(default_factory=dict)


class StatusBook:
    """The written-down part of the statuses, one JSON object keyed by doc_id."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self.path = index_dir / STATUS_FILE

    def read(self) -> Entries:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or damaged: everything is derived again
        return data if isinstance(data, dict) else {}

    def _update(self, change: Callable[[Entries], Any]) -> Any:
        with file_lock(self.index_dir / ".status.lock"):
            entries = self.read()
            result = change(entries)
            fd, tmp = tempfile.mkstemp(dir=self.index_dir, prefix=".status-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(entries, fh, ensure_ascii=False, indent=1)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return result

    def queue(self, doc_id: str, op: str, path: str | None = None,
              sha256: str | None = None) -> None:
        """Record a write (``op`` "add" or "remove") that the next build must apply."""
        entry = {"status": "queued", "op": op, "path": path, "sha256": sha256,
                 "token": secrets.token_hex(8)}
        self._update(lambda entries: entries.__setitem__(doc_id, entry))

    def pending(self) -> bool:
        return any(e.get("status") in PENDING for e in self.read().values())

    def begin(self) -> dict[str, str]:
        """Mark every queued write as indexing; the tokens of the writes this build covers."""
        def start(entries: Entries) -> dict[str, str]:
            snapshot = {}
            for doc_id, entry in entries.items():
                if entry.get("status") in PENDING:
                    entry["status"] = "indexing"
                    snapshot[doc_id] = entry.get("token", "")
            return snapshot
        return self._update(start)

    def settle(self, snapshot: dict[str, str], report: BuildReport) -> None:
        """After a build is live: the writes it covered are done (ready, or gone for a
        removal), every file it could not read is failed with its reason, and older failures
        it no longer sees are cleared."""
        failed = {Path(name).stem: (name, reason) for name, reason in report.failed.items()}

        def apply(entries: Entries) -> None:
            for doc_id, token in snapshot.items():
                if entries.get(doc_id, {}).get("token") == token:
                    del entries[doc_id]
            for doc_id in [d for d, e in entries.items()
                           if e.get("status") == "failed" and d not in failed]:
                del entries[doc_id]
            for doc_id, (name, reason) in failed.items():
                if entries.get(doc_id, {}).get("status") not in PENDING:
                    entries[doc_id] = {"status": "failed", "op": "add", "path": name,
                                       "reason": reason}
        self._update(apply)

    def fail(self, snapshot: dict[str, str], reason: str) -> None:
        """The build itself failed: the writes it covered are failed with ``reason``."""
        def apply(entries: Entries) -> None:
            for doc_id, token in snapshot.items():
                entry = entries.get(doc_id)
                if entry is not None and entry.get("token") == token:
                    entry.update(status="failed", reason=reason)
                    entry.pop("token", None)
        self._update(apply)


def _sidecar(path: Path) -> dict[str, str]:
    try:
        meta = json.loads(path.with_name(path.stem + META_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def statuses(corpus_dir: Path, indexed: Collection[str], entries: Entries) -> dict[str, DocStatus]:
    """Every document's status: those in the served index (``indexed``) and the corpus files
    it does not hold (with their sidecar's metadata, for listing them)."""
    out: dict[str, DocStatus] = {}
    for doc_id in indexed:
        entry = entries.get(doc_id, {})
        out[doc_id] = DocStatus(doc_id, entry.get("status") or "ready", entry.get("reason"))
    files = sorted(p for p in corpus_dir.iterdir()
                   if not p.name.startswith(".") and p.is_file() and supported(p.name)) \
        if corpus_dir.is_dir() else []
    for path in files:
        doc_id = path.stem
        if doc_id in out:
            continue
        entry = entries.get(doc_id, {})
        status: Status = entry.get("status") or "queued"
        out[doc_id] = DocStatus(doc_id, status, entry.get("reason") if status == "failed" else None,
                                path.name, entry.get("sha256") or _sha256(path), _sidecar(path))
    return out
