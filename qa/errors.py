"""The error tree of qa. Each error knows its HTTP status and a stable code.

Errors are raised by the lower layers with plain messages and translated once:
by the exception handlers in ``qa.api.errors`` for HTTP, by the single catch in
``qa.cli.main`` for the command line, and by the tool wrapper in ``qa.mcp.server``.

    QAError (500, internal)
    ├── InvalidRequest (422, invalid_request)     bad query, top_k, mode ...
    │   └── UnknownDocument (404, unknown_document)
    ├── NotFound (404, not_found)                 unknown paragraph, route ...
    ├── IndexNotReady (503, index_not_ready)      no index built / still loading
    ├── IndexCorrupt (503, index_corrupt)         a file of the generation is damaged
    ├── IndexMismatch (503, index_mismatch)       index built by other weights/chunker
    ├── ModelUnavailable (503, model_unavailable) weights cannot be found or loaded
    ├── CorpusError (400, corpus_error)           unreadable corpus file or metadata
    ├── PayloadTooLarge (413, payload_too_large)  request body or upload over its limit
    ├── RequestTimeout (408, request_timeout)     a request body sent too slowly
    ├── ConfigError (503, config_error)           a setting has an invalid value
    ├── UpstreamError (502, upstream_error)       the optional LLM endpoint failed
    ├── Unauthorized (401, unauthorized)          write route without the right API key
    ├── Forbidden (403, forbidden)                write routes disabled (no QA_API_KEY)
    ├── Conflict (409, conflict)                  an upload's doc_id is taken
    └── UnsupportedType (415, unsupported_type)   no reader for this kind of file

The MCP server turns them into tool errors the same way (``qa.mcp.server``).
"""

from __future__ import annotations


class QAError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` the machine-readable code."""

    status: int = 500
    code: str = "internal"
    # Extra HTTP response headers (WWW-Authenticate on a 401); ignored by the CLI.
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(QAError):
    status = 422
    code = "invalid_request"


class UnknownDocument(InvalidRequest):
    status = 404
    code = "unknown_document"


class NotFound(QAError):
    status = 404
    code = "not_found"


class IndexNotReady(QAError):
    status = 503
    code = "index_not_ready"


class IndexCorrupt(QAError):
    """A file of the index generation fails its checksum or cannot be read: nothing of that
    generation is served until ``qa index`` rebuilds it. ``file`` is its name inside the
    generation (the message never carries an absolute path)."""

    status = 503
    code = "index_corrupt"

    def __init__(self, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.file = file


class IndexMismatch(QAError):
    """Built by other weights or another format. 503, not 409: for a client it means the
    service cannot answer until the index is rebuilt, like an index that is not built."""

    status = 503
    code = "index_mismatch"


class ModelUnavailable(QAError):
    status = 503
    code = "model_unavailable"


class CorpusError(QAError):
    status = 400
    code = "corpus_error"


class UpstreamError(QAError):
    status = 502
    code = "upstream_error"


class Unauthorized(QAError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(QAError):
    status = 403
    code = "forbidden"


class Conflict(QAError):
    status = 409
    code = "conflict"


class PayloadTooLarge(QAError):
    status = 413
    code = "payload_too_large"


class RequestTimeout(QAError):
    status = 408
    code = "request_timeout"


class ConfigError(QAError):
    """A setting (QA_* variable, .env line or command-line option) has an invalid value; the
    service cannot work as configured until it is fixed."""

    status = 503
    code = "config_error"
class UnsupportedType(QAError):
    status = 415
    code = "unsupported_type"
