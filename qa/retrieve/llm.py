"""Optional generated answers from an OpenAI-compatible chat completions endpoint.

Off unless a base URL and a model are configured. The model sees the retrieved passages
numbered [1]..[n] and is told to answer in the question's language with a marker after
every sentence; its answer is then checked, not trusted: a marker that points at no
retrieved passage is removed, and a sentence left without any marker is reported as
unsupported. Every failure of the endpoint (unreachable, timeout, non-2xx, malformed
reply) is raised as ``UpstreamError`` with a message that says which; the caller decides
whether to fail or fall back to the extractive answer.

Sync on purpose: the API runs it in its thread pool, like the embedder.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import httpx

from qa.errors import UpstreamError
from qa.types import Hit

Message = dict[str, str]

_MARKER = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")
_CLEAN_MARKER = re.compile(r"\[(\d+)\]")
# A generated sentence ends at CJK or Latin sentence punctuation (a Latin full stop only
# before a space, a marker or the end, so "3.5" stays whole), together with the markers
# that follow it, or at a line break.
_GEN_END = re.compile(
    r"(?:[。！？!?；;]|\.(?=\s|$|\[))[”’」』）)\"']*(?:[ \t]*\[\d+\])*|\n+")
_WORDY = re.compile(r"[\w\u3400-\u9fff]")

_LANGUAGE = {"en": "English", "zh": "简体中文 (Simplified Chinese)"}


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    temperature: float = 0.1
    max_tokens: int = 800

    @property
    def url(self) -> str:
        """``base_url`` may be the API root (``…/v1``) or the full completions URL."""
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


@dataclass(frozen=True)
class Grounded:
    """A generated answer after citation enforcement."""

    text: str
    citations: list[int] = field(default_factory=list)
    unsupported_sentences: list[str] = field(default_factory=list)
    removed_markers: list[str] = field(default_factory=list)


def build_messages(question: str, hits: Sequence[Hit], language: str) -> list[Message]:
    """The prompt: rules in the system message, the numbered passages and the question."""
    lang = _LANGUAGE.get(language, _LANGUAGE["zh"])
    system = (
        "You answer questions about Chinese policy documents using ONLY the numbered "
        "passages you are given, never outside knowledge. "
        f"Write the answer in {lang}. End every sentence with the marker of the passage it "
        "relies on, like [1] or [2][3], using only the numbers of the passages given. "
        "If the passages do not answer the question, say so in one sentence. Be concise."
    )
    blocks = []
    for i, hit in enumerate(hits, start=1):
        blocks.append(f"[{i}] {hit.citation}\n{hit.chunk.clean_text}")
    user = "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _rewrite_markers(text: str, n_passages: int) -> tuple[str, list[str]]:
    removed: list[str] = []

    def fix(m: re.Match[str]) -> str:
        nums = [int(x) for x in re.split(r"\s*[,，、]\s*", m.group(1))]
        good = [x for x in nums if 1 <= x <= n_passages]
        if len(good) < len(nums):
            removed.append(m.group(0))
        return "".join(f"[{x}]" for x in good)

    return _MARKER.sub(fix, text), removed


def generated_sentences(text: str) -> list[str]:
    """A generated answer cut into sentences, each keeping the markers that follow it."""
    out: list[str] = []
    cur = 0
    for m in _GEN_END.finditer(text):
        out.append(text[cur:m.end()])
        cur = m.end()
    out.append(text[cur:])
    return [s.strip() for s in out if s.strip()]


def enforce_citations(text: str, n_passages: int) -> Grounded:
    """Drop markers outside [1, n_passages] (normalising 【2】 and [1, 3] to [2] and
    [1][3]); flag every sentence with words but no marker as unsupported."""
    cleaned, removed = _rewrite_markers(text, n_passages)
    cleaned = re.sub(r"[ \t]+([。！？!?；;,.，])", r"\1", cleaned).strip()
    unsupported = []
    for sentence in generated_sentences(cleaned):
        bare = _CLEAN_MARKER.sub("", sentence)
        if _WORDY.search(bare) and not _CLEAN_MARKER.search(sentence):
            unsupported.append(bare.strip())
    cited = sorted({int(x) for x in _CLEAN_MARKER.findall(cleaned)})
    return Grounded(text=cleaned, citations=cited, unsupported_sentences=unsupported,
                    removed_markers=removed)


class StreamCancel:
    """Closes a streaming reply's connection from another thread: the reader may be blocked
    in a read, which a plain close() does not interrupt on Linux (and the upstream then sees
    no FIN until that read returns); shutdown() ends the read and the connection at once."""

    def __init__(self) -> None:
        self.cancelled = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, resp: httpx.Response) -> None:
        stream = resp.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._sock = sock
            cancelled = self.cancelled
        if cancelled:
            self._shutdown(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            sock = self._sock
        self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket | None) -> None:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ChatClient:
    """A minimal client of ``POST {base_url}/chat/completions``, plain or streamed (SSE)."""

    def __init__(self, config: LLMConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport

    def _client(self) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return httpx.Client(timeout=self.config.timeout, headers=headers,
                            transport=self._transport)

    def _body(self, messages: list[Message], stream: bool) -> dict[str, object]:
        return {"model": self.config.model, "messages": messages, "stream": stream,
                "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}

    def _fail(self, what: str) -> UpstreamError:
        return UpstreamError(f"the LLM endpoint {self.config.url} {what}")

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            detail = resp.read().decode("utf-8", "replace")[:300]
            raise self._fail(f"answered HTTP {resp.status_code}: {detail}")

    def complete(self, messages: list[Message]) -> str:
        """The whole reply at once."""
        try:
            with self._client() as client:
                resp = client.post(self.config.url, json=self._body(messages, False))
                self._check(resp)
                data = resp.json()
        except httpx.HTTPError as exc:
            raise self._fail(f"failed: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise self._fail("sent a reply that is not JSON") from exc
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise self._fail(f"sent no choices[0].message.content: {str(data)[:300]}") from exc
        return content or ""

    def stream(self, messages: list[Message], cancel: StreamCancel | None = None,
               ) -> Iterator[str]:
        """The reply's text pieces as the endpoint streams them (``data: {...}`` events up
        to ``data: [DONE]``). ``cancel.cancel()``, from any thread, closes the connection
        at once, even while this waits for the next piece; the stream then just ends."""
        cancel = cancel or StreamCancel()
        try:
            with self._client() as client, client.stream(
                    "POST", self.config.url, json=self._body(messages, True)) as resp:
                cancel.attach(resp)
                self._check(resp)
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    piece = self._delta(payload)
                    if piece:
                        yield piece
        except httpx.HTTPError as exc:
            if cancel.cancelled:
                return
            raise self._fail(f"failed while streaming: {type(exc).__name__}: {exc}") from exc

    def _delta(self, payload: str) -> str:
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise self._fail(f"streamed an event that is not JSON: {payload[:200]}") from exc
        if isinstance(event, dict) and "error" in event:
            raise self._fail(f"reported an error: {str(event['error'])[:300]}")
        try:
            choices = event["choices"]
            if not choices:
                return ""
            return (choices[0].get("delta") or {}).get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._fail(f"streamed an unexpected event: {payload[:200]}") from exc
