"""HTTP routes. Sync handlers: FastAPI runs them in its thread pool, so encoding a query
never blocks the event loop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from qa.api.schemas import (
    DocumentSummary,
    ErrorResponse,
    Mode,
    Paragraph,
    SearchRequest,
    SearchResponse,
)
from qa.retrieve.search import MAX_QUERY_CHARS, MAX_TOP_K, Searcher
from qa.service.state import ServiceState
from qa.types import Chunk

router = APIRouter()

_ERRORS = {
    400: {"model": ErrorResponse, "description": "Malformed JSON."},
    404: {"model": ErrorResponse, "description": "Unknown document."},
    413: {"model": ErrorResponse, "description": "Request body too large."},
    422: {"model": ErrorResponse, "description": "Invalid query, top_k or mode."},
    503: {"model": ErrorResponse, "description": "Index not built or still loading."},
}


# Async dependencies: FastAPI runs a sync one in its thread pool, one hop per dependency and
# request; these only read attributes, and block (in the pool) only to load a new generation.
async def get_state(request: Request) -> ServiceState:
    return request.app.state.qa


async def get_searcher(state: Annotated[ServiceState, Depends(get_state)]) -> Searcher:
    if state.stale():
        await run_in_threadpool(state.load)
    return state.current()


def json_response(model: BaseModel) -> Response:
    """The model as JSON, serialized once: a returned model would be validated again against
    ``response_model`` (in the thread pool, for a sync route) before being serialized."""
    return Response(model.model_dump_json(), media_type="application/json")


SearcherDep = Annotated[Searcher, Depends(get_searcher)]


@router.post("/search", response_model=SearchResponse, responses=_ERRORS,
             operation_id="search_passages", summary="Search the corpus for cited passages",
             tags=["search"])
def post_search(body: SearchRequest, searcher: SearcherDep) -> Response:
    """Ranked passages that answer the question, each with document, paragraph, exact
    character offsets, speaker, date and a human-readable citation."""
    return json_response(SearchResponse.of(
        searcher.search(body.query, body.top_k, body.mode, body.doc_ids)))


@router.get("/search", response_model=SearchResponse, responses=_ERRORS,
            operation_id="search_passages_get", summary="Search (query-string form)",
            tags=["search"])
def get_search(
    searcher: SearcherDep,
    q: Annotated[str, Query(description="The question.", max_length=MAX_QUERY_CHARS,
                            examples=["光芯屏端网"])],
    top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 5,
    mode: Mode = "auto",
    doc_id: Annotated[list[str] | None, Query(description="Repeat to search several.")] = None,
) -> Response:
    """The same as POST /search, for browsers and simple tools."""
    return json_response(SearchResponse.of(searcher.search(q, top_k, mode, doc_id)))


def paragraphs_of(chunks: list[Chunk]) -> list[Paragraph]:
    out: dict[int, Paragraph] = {}
    for c in chunks:
        p = out.get(c.paragraph)
        if p is None:
            out[c.paragraph] = Paragraph(
                paragraph=c.paragraph, char_start=c.char_start, char_end=c.char_end,
                text=c.text, display_text=c.clean_text, section=list(c.section),
                speaker=c.speaker, speaker_role=c.speaker_role, context=c.context)
        elif c.char_end > p.char_end:
            # Windows of one long paragraph overlap; the paragraph is their union.
            p.text = p.text + c.text[p.char_end - c.char_start:]
            p.display_text = p.text.replace("\n", "")
            p.char_end = c.char_end
    return [out[k] for k in sorted(out)]


def document_summary(searcher: Searcher, doc_id: str, chunks: list[Chunk]) -> DocumentSummary:
    d = searcher.index.store.documents[doc_id]
    return DocumentSummary(doc_id=d.doc_id, title=d.title, date=d.date, source=d.source,
                           type=d.doc_type, language=d.language, path=d.path, sha256=d.sha256,
                           paragraph_count=len({c.paragraph for c in chunks}),
                           chunk_count=len(chunks))


# GET /documents and /documents/{doc_id} live in qa.api.document_routes, with the writes.


@router.get("/healthz", operation_id="healthz", summary="Liveness", tags=["ops"])
def healthz() -> dict[str, str]:
    """The process is up (it may still be loading: see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", summary="Readiness: model and index loaded",
            tags=["ops"], responses={503: {"model": ErrorResponse}})
def readyz(state: Annotated[ServiceState, Depends(get_state)]) -> JSONResponse:
    """200 with the model and index counts once both are loaded; 503 until then."""
    try:
        searcher = state.get_searcher()
    except Exception as exc:  # every not-ready reason is a 503 here, never a 500
        message = getattr(exc, "message", str(exc))
        code = getattr(exc, "code", "not_ready")
        return JSONResponse({"status": "loading" if state.loading else "not_ready",
                             "error": {"code": code, "message": message}}, status_code=503)
    m = searcher.index.manifest
    return JSONResponse({
        "status": "ready",
        "model": m["model"]["id"],
        "model_fingerprint": m["model"]["fingerprint"],
        "documents": m["counts"]["documents"],
        "chunks": m["counts"]["chunks"],
        "index": searcher.index.path.name,
        "vector_index": m["vectors"],
        "startup_seconds": round((state.ready_at or 0) - state.started_at, 2),
    })
