"""HTTP routes. Sync handlers: FastAPI runs them in its thread pool, so encoding a query
never blocks the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from qa.retrieve.query import MAX_QUERY_CHARS, MAX_TOP_K, NON_BLANK
from qa.retrieve.search import Searcher
from qa.service.schemas import (
    ErrorResponse,
    Mode,
    SearchRequest,
    SearchResponse,
    Text,
)
from qa.service.state import ServiceState

router = APIRouter()


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


UNAVAILABLE = _error("Index not built, still loading, damaged (`index_corrupt`: `qa index` "
                     "repairs it) or built by another model.")
# What a route with a JSON body can answer besides its own errors.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed JSON."),
    408: _error("The request body arrived too slowly."),
    413: _error("Request body too large."),
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    404: _error("Unknown document."),
    422: _error("Invalid query, top_k, mode or doc_ids."),
    503: UNAVAILABLE,
}
_GET_ERRORS = {k: v for k, v in _ERRORS.items() if k not in BODY_ERRORS}


# Async dependencies: FastAPI runs a sync one in its thread pool, one hop per dependency and
# request; these only read attributes, and block (in the pool) only to load a new generation.
async def get_state(request: Request) -> ServiceState:
    return request.app.state.qa


async def get_searcher(state: Annotated[ServiceState, Depends(get_state)],
                       ) -> AsyncIterator[Searcher]:
    """The served searcher, leased until the response is sent: a reload meanwhile retires
    the old generation, and closes it only after this request is done."""
    if state.stale():
        await run_in_threadpool(state.reload_if_stale)
    with state.lease() as searcher:
        yield searcher


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


@router.get("/search", response_model=SearchResponse, responses=_GET_ERRORS,
            operation_id="search_passages_get", summary="Search (query-string form)",
            tags=["search"])
def get_search(
    searcher: SearcherDep,
    # A query string is percent-decoded with replacement characters: it never carries a
    # lone surrogate, unlike JSON.
    q: Annotated[str, Query(description="The question.", min_length=1,
                            max_length=MAX_QUERY_CHARS, pattern=NON_BLANK,
                            examples=["光芯屏端网"])],
    top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 5,
    mode: Mode = "auto",
    doc_id: Annotated[list[Text] | None,
                      Query(description="Repeat to search several.")] = None,
) -> Response:
    """The same as POST /search, for browsers and simple tools."""
    return json_response(SearchResponse.of(searcher.search(q, top_k, mode, doc_id)))


# GET /documents and /documents/{doc_id} live in qa.api.document_routes, with the writes.


@router.get("/healthz", operation_id="healthz", summary="Liveness", tags=["ops"])
def healthz() -> dict[str, str]:
    """The process is up (it may still be loading: see /readyz)."""
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", summary="Readiness: model and index loaded",
            tags=["ops"], responses={503: {"model": ErrorResponse, "description": "Nothing "
                                           "can be served: loading, no index, a damaged or "
                                           "incompatible one."}})
def readyz(state: Annotated[ServiceState, Depends(get_state)]) -> JSONResponse:
    """200 with the model, the generation actually served and its counts once loaded; 503
    until then, or when nothing can be served. `current` names the generation index/CURRENT
    points at; when it could not be loaded (`reload_error`), the previous one is still
    served and `status` is "degraded"."""
    try:
        searcher = state.get_searcher()
    except Exception as exc:  # every not-ready reason is a 503 here, never a 500
        message = getattr(exc, "message", "not ready; the server log has the details")
        code = getattr(exc, "code", "not_ready")
        return JSONResponse({"status": "loading" if state.loading else "not_ready",
                             "error": {"code": code, "message": message}}, status_code=503)
    m = searcher.index.manifest
    failed = state.reload_error
    return JSONResponse({
        "status": "degraded" if failed is not None else "ready",
        "model": m["model"]["id"],
        "model_fingerprint": m["model"]["fingerprint"],
        "documents": m["counts"]["documents"],
        "chunks": m["counts"]["chunks"],
        "index": searcher.index.path.name,
        "current": state.pointer(),
        "reload_error": ({"code": failed.code, "message": failed.message}
                         if failed is not None else None),
        "vector_index": m["vectors"],
        "startup_seconds": round((state.ready_at or 0) - state.started_at, 2),
    })
