"""What a question may be: checked before anything heavy is loaded (the CLI calls this
before the model), and again by search itself."""

from __future__ import annotations

from qa.errors import InvalidRequest

MODES = ("auto", "hybrid", "dense", "lexical")
MAX_QUERY_CHARS = 2000
MAX_TOP_K = 50

__all__ = ["MAX_QUERY_CHARS", "MAX_TOP_K", "MODES", "validate"]


def validate(query: str, top_k: int, mode: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidRequest(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
    if mode not in MODES:
        raise InvalidRequest(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return query.strip()
