"""What a question may be: checked before anything heavy is loaded (the CLI calls this
before the model), and again by search itself."""

from __future__ import annotations

from collections.abc import Sequence

from qa.errors import InvalidRequest

MODES = ("auto", "hybrid", "dense", "lexical")
MAX_QUERY_CHARS = 2000
MAX_TOP_K = 50
# "Has a character that is not whitespace", for JSON Schema and pydantic alike: str.strip()
# also strips \x1c-\x1f, which Rust's and JSON Schema's \s do not include.
NON_BLANK = r"[^\s\x1c-\x1f]"

__all__ = ["MAX_QUERY_CHARS", "MAX_TOP_K", "MODES", "NON_BLANK", "check_text", "check_texts",
           "validate"]


def check_text(value: str, what: str) -> str:
    """Refuse text that cannot be encoded as UTF-8 (a lone surrogate from a JSON escape like
    "\\ud800"): it can match nothing, and would fail deep in SQLite or the tokenizer."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} must be valid Unicode text (it contains a lone "
                             "surrogate)") from None
    return value


def check_texts(values: Sequence[str] | None, what: str) -> None:
    for v in values or ():
        if not isinstance(v, str):
            raise InvalidRequest(f"{what} must be strings")
        check_text(v, what)


def validate(query: str, top_k: int, mode: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("query must be a non-empty string")
    check_text(query, "query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidRequest(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
    if mode not in MODES:
        raise InvalidRequest(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return query.strip()
