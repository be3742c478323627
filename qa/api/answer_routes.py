"""POST /answer: an extractive, cited answer; optionally an LLM-written one; optionally streamed.

Generation policy: the extractive answer is the product and never depends on the LLM. When
``generate`` is asked for but no LLM is configured, or the endpoint fails (UpstreamError),
or the search says the corpus does not cover the question, the response still comes with
status 200 and the extractive answer, ``generated: null`` and a ``warnings`` entry saying
why. A streamed response cannot change its status once it has begun, so degrading is the
one policy that works the same for both forms.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from qa.api.answer_schemas import AnswerRequest, AnswerResponse
from qa.api.routes import BODY_ERRORS, UNAVAILABLE, SearcherDep
from qa.config import Settings
from qa.errors import UpstreamError
from qa.retrieve.answer import Answer, answer
from qa.retrieve.llm import (
    ChatClient,
    LLMConfig,
    StreamCancel,
    build_messages,
    enforce_citations,
)
from qa.service.schemas import ErrorResponse

log = logging.getLogger("qa.api")
router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    **BODY_ERRORS,
    422: {"model": ErrorResponse, "description": "Invalid question, top_k or max_sentences."},
    503: UNAVAILABLE,
}
_STREAM_DOC = (
    "With `\"stream\": true`: server-sent events. `passages` (the retrieved passages, "
    "`answerable`, `confidence`), then one `answer` event per quoted sentence "
    "(`{\"delta\", \"sentence\"}`), with `generate` the LLM's `token` events "
    "(`{\"delta\"}`), possibly `warning` events, and last `done` carrying the same JSON "
    "as the non-streamed response (where generated text has had its citations enforced)."
)
NOT_CONFIGURED = ("generation is not configured (set QA_LLM_BASE_URL and QA_LLM_MODEL, and "
                  "QA_LLM_API_KEY if the endpoint needs one); extractive answer only")
NOT_COVERED = "the corpus does not cover the question; nothing was generated"


def get_llm(request: Request) -> ChatClient | None:
    """The configured LLM client, or None. Tests swap the settings for a local endpoint."""
    settings: Settings = request.app.state.settings
    if not (settings.llm_base_url and settings.llm_model):
        return None
    return ChatClient(LLMConfig(base_url=settings.llm_base_url, model=settings.llm_model,
                                api_key=settings.llm_api_key))


LLMDep = Annotated[ChatClient | None, Depends(get_llm)]


def _skip_reason(ans: Answer, llm: ChatClient | None) -> str | None:
    if llm is None:
        return NOT_CONFIGURED
    if not ans.answerable:
        return NOT_COVERED
    return None


def _apply(resp: AnswerResponse, text: str) -> None:
    grounded = enforce_citations(text, len(resp.passages))
    resp.generated = grounded.text
    resp.unsupported_sentences = grounded.unsupported_sentences
    resp.removed_markers = grounded.removed_markers


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 2)


def _stream(ans: Answer, resp: AnswerResponse, generate: bool, llm: ChatClient | None,
            started: float, cancel: StreamCancel) -> Iterator[str]:
    yield _event("passages", {"question": resp.question, "language": resp.language,
                              "answerable": resp.answerable, "confidence": resp.confidence,
                              "passages": [p.model_dump() for p in resp.passages]})
    if resp.sentences:
        last = len(resp.sentences) - 1
        for i, s in enumerate(resp.sentences):
            delta = f"{s.display_text}[{s.passage}]" + ("" if i == last else " ")
            yield _event("answer", {"delta": delta, "sentence": s.model_dump()})
    else:
        yield _event("answer", {"delta": resp.answer, "sentence": None})
    if generate:
        reason = _skip_reason(ans, llm)
        if reason is None and llm is not None:
            pieces: list[str] = []
            try:
                messages = build_messages(ans.question, ans.result.hits, ans.language)
                for piece in llm.stream(messages, cancel):
                    pieces.append(piece)
                    yield _event("token", {"delta": piece})
                _apply(resp, "".join(pieces))
            except UpstreamError as exc:
                log.warning("generation failed: %s", exc.message)
                reason = f"{exc.message}; extractive answer only"
        if reason is not None:
            resp.warnings.append(reason)
            yield _event("warning", {"message": reason})
    resp.took_ms = _ms_since(started)
    yield _event("done", resp.model_dump())


async def _relay(events: Iterator[str], cancel: StreamCancel) -> AsyncIterator[str]:
    """The events, produced in the thread pool. When the client goes away, Starlette cancels
    this mid-wait: the thread (blocked on the LLM's next token) is abandoned and the upstream
    connection shut down at once, instead of staying open until the LLM's next token or its
    timeout (it stayed established for minutes)."""
    done = False
    try:
        while (event := await anyio.to_thread.run_sync(next, events, None,
                                                        abandon_on_cancel=True)) is not None:
            yield event
        done = True
    finally:
        if not done:
            cancel.cancel()


_DESCRIPTION = (
    "Quote the sentences of the corpus that best answer the question, each followed by a "
    "marker [n] that points at passages[n-1], with exact character offsets into the source "
    "file (source[char_start:char_end] == text). English questions get Chinese quotes: "
    "sentences are scored by the same multilingual embedder as the search. When the corpus "
    "does not cover the question, the answer says so and quotes nothing. With "
    "`generate: true` and an LLM configured, `generated` adds an answer written from the "
    "passages, its citation markers checked; if that fails, `warnings` says why and the "
    "extractive answer stands.\n\n" + _STREAM_DOC
)


@router.post(
    "/answer", response_model=AnswerResponse, operation_id="answer_question",
    summary="Answer a question with cited quotes from the corpus", tags=["answer"],
    description=_DESCRIPTION,
    responses={**_ERRORS, 200: {"description": "The answer (JSON), or with stream: true a "
                                               "text/event-stream of events.",
                                "content": {"text/event-stream": {}}}},
)
def post_answer(body: AnswerRequest, searcher: SearcherDep,
                llm: LLMDep) -> AnswerResponse | StreamingResponse:
    started = time.perf_counter()
    ans = answer(searcher, body.question, body.top_k, body.max_sentences, body.mode)
    resp = AnswerResponse.of(ans)
    if body.stream:
        cancel = StreamCancel()
        return StreamingResponse(_relay(_stream(ans, resp, body.generate, llm, started,
                                                cancel), cancel),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})
    if body.generate:
        reason = _skip_reason(ans, llm)
        if reason is None and llm is not None:
            try:
                _apply(resp, llm.complete(build_messages(ans.question, ans.result.hits,
                                                         ans.language)))
            except UpstreamError as exc:
                log.warning("generation failed: %s", exc.message)
                reason = f"{exc.message}; extractive answer only"
        if reason is not None:
            resp.warnings.append(reason)
    resp.took_ms = _ms_since(started)
    return resp
