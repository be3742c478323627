"""A document's text as read and its original file: what a citation can be checked against.

``GET /documents/{doc_id}/text`` serves the text every ``char_start``/``char_end`` indexes
(``text == served[char_start:char_end]``, for a PDF or a web page as for a plain file);
``GET /documents/{doc_id}/file`` the file itself, from the corpus folder and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, PlainTextResponse

from qa.api.routes import SearcherDep, get_state
from qa.errors import NotFound, UnknownDocument
from qa.retrieve.search import Searcher
from qa.service.state import ServiceState
from qa.types import Document

router = APIRouter(tags=["documents"])

# These routes answer text or a file, but their errors are JSON like every route's: the
# media type is named, or OpenAPI would document the errors as the route's own type.
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown document, or file gone.", "content": _JSON_ERROR},
    422: {"description": "Invalid document id.", "content": _JSON_ERROR},
    503: {"description": "Index not built, still loading or damaged.", "content": _JSON_ERROR},
}


def _document(searcher: Searcher, doc_id: str) -> Document:
    doc = searcher.index.store.documents.get(doc_id)
    if doc is None:
        raise UnknownDocument(f"unknown doc_id {doc_id!r}; GET /documents lists them")
    return doc


def corpus_file(corpus_dir: Path, name: str) -> Path | None:
    """The file ``name`` inside ``corpus_dir``, or None if it is gone or resolves outside
    the folder (a link, a name with a path in it)."""
    root = corpus_dir.resolve()
    try:
        path = (root / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if path.parent != root or not path.is_file():
        return None
    return path


@router.get("/documents/{doc_id}/text", response_class=PlainTextResponse, responses=_ERRORS,
            operation_id="get_document_text", summary="The document's text as read")
def get_document_text(doc_id: str, searcher: SearcherDep) -> PlainTextResponse:
    """The text the document was read as (for a PDF, its paragraphs one per line, page
    furniture dropped): every result's ``char_start``/``char_end`` index into it."""
    _document(searcher, doc_id)
    text = searcher.index.store.text_of(doc_id)
    if text is None:
        raise NotFound(f"the index holds no text for {doc_id!r}; rebuild it with `qa index`")
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


@router.get("/documents/{doc_id}/file", response_class=FileResponse, responses=_ERRORS,
            operation_id="get_document_file", summary="The original file")
def get_document_file(doc_id: str, searcher: SearcherDep,
                      state: Annotated[ServiceState, Depends(get_state)]) -> FileResponse:
    """The document's file as it is in the corpus folder, with its media type."""
    doc = _document(searcher, doc_id)
    path = corpus_file(state.settings.corpus_dir, doc.path)
    if path is None:
        raise NotFound(f"the file of {doc_id!r} ({doc.path}) is no longer in the corpus folder")
    # The indexed file's hash: a client can tell whether the file changed since.
    return FileResponse(path, media_type=doc.media_type, content_disposition_type="inline",
                        filename=doc.path, headers={"X-Indexed-SHA256": doc.sha256})
