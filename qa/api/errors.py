"""Errors translated once into ``{"error": {"code", "message"}}``, and a body-size limit.

Bad input is answered with a 4xx that says what to change; only a genuine bug yields a 500,
and then without internals in the message.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.errors import PayloadTooLarge, QAError

log = logging.getLogger("qa.api")

__all__ = ["BodyLimitMiddleware", "PayloadTooLarge", "error_response", "install_error_handlers"]

FORM_OVERHEAD = 64 * 1024

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


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
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return 422, "invalid_request", "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(QAError)
    async def _qa(_: Request, exc: QAError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*_describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error; the server log has the details")


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, by header and by counting while the
    body streams in, so a client cannot make the server buffer an unbounded body.

    ``upload_routes`` (method, path) get ``upload_bytes`` instead: a file upload is allowed
    far more than a JSON body (its route checks the file's own size against the setting).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None,
                 upload_routes: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.upload_routes = upload_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, reason = self.max_bytes, f"request body over {self.max_bytes} bytes"
        if self.upload_bytes is not None and (scope["method"], scope["path"]) in self.upload_routes:
            # The multipart framing and the form fields come on top of the file itself.
            limit = self.upload_bytes + FORM_OVERHEAD
            reason = f"upload over the limit of {self.upload_bytes} bytes (QA_MAX_UPLOAD_BYTES)"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = error_response(413, "payload_too_large", reason)
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
            # Whatever the app makes of the aborted body (FastAPI turns a failed form parse
            # into a 400), the client gets the 413 below instead.
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
