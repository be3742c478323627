"""/documents: list and read documents with their status; add and remove them.

The write routes need ``Authorization: Bearer <QA_API_KEY>`` and are off (403) while no key
is set. An upload is stored in the corpus at once and indexed in the background by the
service's single writer; search answers from the live index meanwhile. The work is done by
``qa.service.writes``, the same functions ``qa add`` and ``qa remove`` call.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from qa.api.routes import UNAVAILABLE, get_state
from qa.config import Settings
from qa.errors import (
    Forbidden,
    IndexNotReady,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
    UnknownDocument,
)
from qa.retrieve.search import Searcher
from qa.service.documents import document_summary, paragraphs_of
from qa.service.schemas import (
    DocumentDetail,
    DocumentList,
    DocumentSummary,
    ErrorResponse,
    WriteAccepted,
)
from qa.service.state import ServiceState
from qa.service.status import DocStatus, StatusBook, statuses
from qa.service.writes import Writer, add_document, remove_document

router = APIRouter(tags=["documents"])
META_FIELDS = ("title", "date", "source", "type")


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _err("Unknown document."),
    422: _err("A doc_id that is not valid Unicode text."),
    503: UNAVAILABLE,
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _err("No API key, or the wrong one: send `Authorization: Bearer <QA_API_KEY>`."),
    403: _err("Write routes are off: the server has no QA_API_KEY."),
    404: _err("Unknown document."),
}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **{k: v for k, v in _WRITE_ERRORS.items() if k != 404},
    400: _err("Malformed multipart body."),
    409: _err("A document with this doc_id exists; send ?replace=true to replace it."),
    413: _err("The file is over QA_MAX_UPLOAD_BYTES."),
    415: _err("No reader for this type of file."),
    422: _err("No `file` field, an unusable file name, or bad metadata."),
}
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "The document; its file name gives the doc_id."},
        "title": {"type": "string"},
        "date": {"type": "string", "description": "YYYY-MM-DD (or YYYY-MM, YYYY)."},
        "source": {"type": "string"},
        "type": {"type": "string"},
    }}}}}}


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


async def require_key(request: Request) -> None:
    """Checked before the body is read: no upload is buffered for a caller without the key."""
    settings: Settings = request.app.state.settings
    if not settings.api_key:
        raise Forbidden("adding and removing documents is disabled on this server: start it "
                        "with QA_API_KEY=<a secret> and send `Authorization: Bearer <secret>`")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Digests of equal length, compared in constant time: the key's length does not leak.
    if scheme.lower() != "bearer" or not hmac.compare_digest(_digest(given.strip()),
                                                             _digest(settings.api_key)):
        raise Unauthorized("missing or wrong API key: send `Authorization: Bearer <QA_API_KEY>`")


async def served_searcher(state: Annotated[ServiceState, Depends(get_state)],
                          ) -> AsyncIterator[Searcher | None]:
    """The live searcher, leased until the response is sent, or None where no index exists
    yet (uploads may still be queued); a damaged index is still a 503."""
    if state.stale():
        await run_in_threadpool(state.reload_if_stale)
    lease = state.lease()
    try:
        searcher = lease.__enter__()
    except IndexNotReady as exc:
        if state.loading or type(exc) is not IndexNotReady:
            raise
        yield None
        return
    try:
        yield searcher
    finally:
        lease.__exit__(None, None, None)


ServedDep = Annotated[Searcher | None, Depends(served_searcher)]


def _unindexed_summary(view: DocStatus) -> DocumentSummary:
    meta = view.meta
    return DocumentSummary(doc_id=view.doc_id, title=meta.get("title") or view.doc_id,
                           date=meta.get("date"), source=meta.get("source"),
                           type=meta.get("type"), language=meta.get("language") or "zh",
                           path=view.path or "", sha256=view.sha256 or "", paragraph_count=0,
                           chunk_count=0, media_type="application/octet-stream",
                           page_count=None, status=view.status, reason=view.reason)


def _views(request: Request, searcher: Searcher | None) -> dict[str, DocStatus]:
    settings: Settings = request.app.state.settings
    indexed = searcher.index.store.documents if searcher is not None else {}
    return statuses(settings.corpus_dir, indexed, StatusBook(settings.index_dir).read())


@router.get("/documents", response_model=DocumentList, operation_id="list_documents",
            summary="List the documents and their status", responses=_READ_ERRORS)
def list_documents(request: Request, searcher: ServedDep) -> DocumentList:
    """Every document with its metadata, counts and status: the indexed ones, and those
    queued, being indexed or failed (with the reason), which have no paragraphs yet."""
    views = _views(request, searcher)
    out = []
    for doc_id, view in sorted(views.items()):
        if searcher is not None and doc_id in searcher.index.store.documents:
            summary = document_summary(searcher, doc_id, searcher.index.store.chunks_of(doc_id))
            out.append(summary.model_copy(update={"status": view.status, "reason": view.reason}))
        else:
            out.append(_unindexed_summary(view))
    return DocumentList(documents=out)


@router.get("/documents/{doc_id}", response_model=DocumentDetail, operation_id="get_document",
            summary="A document's metadata, status and paragraphs", responses=_READ_ERRORS)
def get_document(doc_id: str, request: Request, searcher: ServedDep) -> DocumentDetail:
    """One document's metadata, status and indexed paragraphs, with exact source offsets
    (none yet while it is queued or failed)."""
    views = _views(request, searcher)
    view = views.get(doc_id)
    if view is None:
        raise UnknownDocument(f"unknown doc_id {doc_id!r}; GET /documents lists them")
    if searcher is None or doc_id not in searcher.index.store.documents:
        return DocumentDetail(**_unindexed_summary(view).model_dump(), paragraphs=[])
    chunks = searcher.index.store.chunks_of(doc_id)
    summary = document_summary(searcher, doc_id, chunks)
    return DocumentDetail(**summary.model_dump(exclude={"status", "reason"}), status=view.status,
                          reason=view.reason, paragraphs=paragraphs_of(chunks))


@router.post("/documents", status_code=202, response_model=WriteAccepted,
             operation_id="add_document", summary="Upload a document (indexed in the background)",
             dependencies=[Depends(require_key)], responses=_UPLOAD_ERRORS,
             openapi_extra=_UPLOAD_BODY)
async def upload_document(
    request: Request,
    replace: Annotated[bool, Query(description="Replace a document with the same doc_id.")]
    = False,
) -> JSONResponse:
    """Multipart form: `file` (required), `title`, `date`, `source`, `type` (optional).
    Answers 202 with the doc_id (from the file name, made safe) and `queued`; poll
    GET /documents/{doc_id} until `ready` (or `failed`, with the reason)."""
    settings: Settings = request.app.state.settings
    writer: Writer = request.app.state.writer
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("send the document as a multipart/form-data field named `file`")
        if upload.size is not None and upload.size > settings.max_upload_bytes:
            raise PayloadTooLarge(f"upload over the limit of {settings.max_upload_bytes} bytes "
                                  "(QA_MAX_UPLOAD_BYTES)")
        meta: dict[str, str | None] = {k: v for k in META_FIELDS
                                        if isinstance(v := form.get(k), str)}
        stored = await run_in_threadpool(add_document, settings, upload.filename, upload.file,
                                         meta, replace=replace,
                                         max_bytes=settings.max_upload_bytes)
    writer.request()
    return JSONResponse(WriteAccepted(doc_id=stored.doc_id, status="queued").model_dump(),
                        status_code=202)


@router.delete("/documents/{doc_id}", status_code=202, response_model=WriteAccepted,
               operation_id="remove_document", summary="Remove a document",
               dependencies=[Depends(require_key)], responses=_WRITE_ERRORS)
def delete_document(doc_id: str, request: Request) -> JSONResponse:
    """Deletes the document's files from the corpus and answers 202 `queued`; once the
    background build is live it is gone from /search and GET /documents/{doc_id} says 404."""
    remove_document(request.app.state.settings, doc_id)
    request.app.state.writer.request()
    return JSONResponse(WriteAccepted(doc_id=doc_id, status="queued").model_dump(),
                        status_code=202)
