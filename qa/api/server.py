"""Running the app under uvicorn, with slow clients cut off.

uvicorn (0.54) bounds only the idle time between requests of a keep-alive connection: a
client that connects and sends nothing, or sends its request head a byte at a time, holds
the connection for as long as it likes (200 such connections stayed open 30 s and more).
So the HTTP protocol here is uvicorn's httptools protocol with two additions: the request
line and headers must arrive within ``header_timeout_s`` of the connection (or of the
previous response) and be at most ``max_header_bytes``. Slow bodies are the app's concern
(``BodyLimitMiddleware``: 408 after ``body_timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from qa.config import Settings

log = logging.getLogger("qa.api")

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def _refusal(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


def bounded_protocol(header_timeout_s: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, with a deadline and a size limit on request heads."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _in_head = False  # waiting for a request head, or for the rest of one

        def _await_head(self) -> None:
            self._stop_head_timer()
            self._in_head, self._head_bytes = True, 0
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_too_slow)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, status: int, code: str, message: str) -> None:
            self._stop_head_timer()
            if not self.transport.is_closing():
                self.transport.write(_refusal(status, code, message))
                self.transport.close()

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport.is_closing():
                return
            if self._head_bytes == 0:  # idle: nothing to answer
                self.transport.close()
                return
            self._refuse(408, "request_timeout", f"the request head did not arrive within "
                                                 f"{header_timeout_s:g} seconds")

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Counted after parsing: bytes of a head that completed in this read, and the
            # body after it, are not a head still growing.
            if self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > max_header_bytes:
                    self._refuse(431, "request_head_too_large",
                                 f"the request line and headers exceed {max_header_bytes} bytes")

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._stop_head_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            if not pipelined and not self.transport.is_closing():
                self._await_head()

    return BoundedHttpToolsProtocol


def server_config(app: Any, settings: Settings, **overrides: Any) -> Any:
    """The uvicorn Config ``qa serve`` runs (tests run the same on a loopback socket)."""
    import uvicorn

    try:
        http: Any = bounded_protocol(settings.header_timeout_s, settings.max_header_bytes)
    except ImportError:  # pragma: no cover - httptools ships with uvicorn[standard]
        log.warning("httptools is missing: request heads are bounded in size, not in time")
        http = "h11"
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "http": http,
        "timeout_keep_alive": settings.keep_alive_s,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "log_level": "info", **overrides}
    return uvicorn.Config(app, **options)
