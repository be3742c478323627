"""Errors translated once into ``{"error": {"code", "message"}}``, and limits on bodies.

Bad input is answered with a 4xx that says what to change; only a genuine bug yields a 500,
and then without internals in the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.errors import PayloadTooLarge, QAError
from qa.retrieve.query import NON_BLANK

log = logging.getLogger("qa.api")

# The multipart framing and the form fields of an upload come on top of the file itself.
FORM_OVERHEAD = 64 * 1024


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    # A message that quotes the client's input must still encode: a lone surrogate made
    # the response itself fail, and the connection with it.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def field_message(e: Mapping[str, Any]) -> str:
    """A pydantic error's message, in words a client can act on."""
    if e.get("type") == "string_pattern_mismatch" and \
            (e.get("ctx") or {}).get("pattern") == NON_BLANK:
        return "must contain a character that is not a space"
    if e.get("type") == "string_unicode":
        return "must be valid Unicode text (it contains a lone surrogate)"
    return str(e.get("msg", "invalid"))


def _describe(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed_json", "the request body is not valid JSON"
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        if e.get("type") == "missing" and not loc:
            parts.append("a JSON body is required")
            continue
        parts.append(f"{loc or 'body'}: {field_message(e)}")
    return 422, "invalid_request", "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(QAError)
    async def _qa(_: Request, exc: QAError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*_describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
        return error_response(exc.status_code, code, str(exc.detail), headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error; the server log has the details")


def allowed_methods(request: Request) -> set[str]:
    """Every method some route accepts on this path: starlette's own Allow header names only
    the first route that matched the path (GET /search, not POST), and FastAPI's included
    routers hide their routes, so each method is tried against the whole router."""
    return {m for m in _METHODS
            if any(route.matches({**request.scope, "method": m})[0] == Match.FULL
                   for route in request.app.router.routes)}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class BodyLimitMiddleware:
    """Reads a request's body before the app sees it, refusing one over ``max_bytes`` (413,
    by header and by counting, so a client cannot make the server buffer an unbounded body)
    or one that has not arrived within ``timeout_s`` (408: a client sending slowly holds a
    connection and a task). Both answers close the connection. Bodies are small (64 KiB by
    default), so buffering them costs nothing."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None,
                 upload_bytes: int | None = None,
                 upload_routes: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        # (method, path) pairs that take files: up to ``upload_bytes``, streamed to the app
        # and counted on the way rather than buffered (their route checks the file's size).
        self.upload_bytes = upload_bytes
        self.upload_routes = upload_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.upload_bytes is not None and (scope["method"], scope["path"]) in self.upload_routes:
            await self._stream_upload(scope, receive, send)
            return
        close = {"Connection": "close"}
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = error_response(413, "payload_too_large",
                                 f"request body over {self.max_bytes} bytes", close)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_big(scope, receive, send)
            return
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        chunks: list[bytes] = []
        seen = 0
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), None if deadline is None else max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                await error_response(408, "request_timeout",
                                     f"the request body did not arrive within {self.timeout_s:g} "
                                     "seconds", close)(scope, receive, send)
                return
            if message["type"] != "http.request":
                return  # the client went away before its body was complete
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: http.disconnect, when it comes

        await self.app(scope, replay, send)

    async def _stream_upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An upload goes to the app as it arrives, counted; over the limit the app's reading
        is cut short and the client gets 413 (whatever the app made of the broken form)."""
        assert self.upload_bytes is not None
        limit = self.upload_bytes + FORM_OVERHEAD
        reason = f"upload over the limit of {self.upload_bytes} bytes (QA_MAX_UPLOAD_BYTES)"
        too_big = error_response(413, "payload_too_large", reason, {"Connection": "close"})
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_big(scope, receive, send)
            return
        seen = 0
        over = started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise PayloadTooLarge(reason)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await too_big(scope, receive, send)
