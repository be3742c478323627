"""The corpus as MCP tools, for chat applications (Claude Desktop, IDE agents, ...).

Three read-only tools: ``search_passages`` (the same results and citation fields as
POST /search), ``get_passage`` (a paragraph with its neighbours) and ``list_documents``.
They are defined once, here, as typed functions: the official SDK derives the MCP input
schemas from them, and GET /tools turns the same listing into OpenAI-style function
definitions.

Two transports share these definitions: stdio (``qa mcp``, which loads its own model and
index) and streamable HTTP at ``/mcp`` inside the FastAPI app, on the app's own
ServiceState. Domain errors come back as MCP tool errors (``isError``) carrying the
message, never as a crash of the server.

No ``from __future__ import annotations`` here: the SDK reads the tools' annotations at
registration, and real objects are simpler for it than strings.
"""

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.types import Receive, Scope, Send

from qa import __version__
from qa.errors import QAError
from qa.retrieve.query import MAX_QUERY_CHARS, MAX_TOP_K
from qa.retrieve.search import Searcher
from qa.service.documents import PassageInContext, list_document_summaries, passage_in_context
from qa.service.schemas import DocumentList, SearchResponse

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.service.state import ServiceState

# Called on every tool call; the searcher is used inside the block it returns (a lease: a
# reload never closes a generation a tool call still reads).
SearcherSource = Callable[[], AbstractContextManager[Searcher]]

CORPUS = (
    "The corpus: documents on the plenary sessions of the CPC Wuhan Municipal Committee "
    "(press-conference transcripts, digests of the sessions' decisions); users may add their "
    "own documents. Questions may be asked in Chinese or in English.\n"
    "语料库：中共武汉市委全体会议的相关文件（新闻发布会实录、全会精神摘要等），用户也可以添加"
    "自己的文件。可以用中文或英文提问。"
)
INSTRUCTIONS = (
    "Cited search over Chinese policy documents. Call search_passages with the user's "
    "question (Chinese or English) and answer only from the passages it returns, citing "
    "each with its `citation`; when `answerable` is false, say that the corpus does not "
    "cover the question. get_passage shows a paragraph with its neighbours; "
    "list_documents names the documents.\n" + CORPUS
)
SEARCH_DESCRIPTION = (
    "Search the corpus for the passages that answer a question. Returns ranked passages, "
    "each with a citation you can check: document, paragraph number, exact character "
    "offsets into the source file (source[char_start:char_end] == text), speaker and date. "
    "`answerable: false` means the corpus most likely does not cover the question: say so "
    "rather than cite the passages.\n"
    "检索语料库中能回答问题的段落，按相关度排序，每段附可核查的引用：文件、段落号、原文字符"
    "位置、发言人和日期。answerable 为 false 表示语料库很可能没有答案。\n" + CORPUS
)
PASSAGE_DESCRIPTION = (
    "Read one paragraph of a document together with the paragraph before and after it, for "
    "context; each with its offsets and citation. Use the doc_id and paragraph of a "
    "search_passages result.\n"
    "读取文件中的某一段及其前后各一段（上下文），均附字符位置和引用。doc_id 和 paragraph "
    "取自 search_passages 的结果。\n" + CORPUS
)
DOCUMENTS_DESCRIPTION = (
    "List the indexed documents: doc_id, title, date, source, type, language and how many "
    "paragraphs each has. Use a doc_id to restrict search_passages or to call get_passage.\n"
    "列出已索引的文件（doc_id、标题、日期、来源、类型、语言、段落数）。\n" + CORPUS
)

_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                             idempotent_hint=True, open_world_hint=False)


@contextmanager
def _as_tool_errors() -> Iterator[None]:
    """QAError -> ToolError: the client gets ``isError`` and a message it can act on."""
    try:
        yield
    except QAError as exc:
        raise ToolError(f"{exc.code}: {exc.message}") from exc


def _new_server(lifespan: Callable[[MCPServer], AbstractAsyncContextManager[Any]] | None,
                log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None) -> MCPServer:
    def make() -> MCPServer:
        return MCPServer("qa", title="qa: cited search over Chinese policy documents",
                         instructions=INSTRUCTIONS, version=__version__, lifespan=lifespan,
                         log_level=log_level or "WARNING")

    root = logging.getLogger()
    if log_level is not None or root.handlers:
        return make()
    # The SDK calls logging.basicConfig() in its constructor, which would install its own
    # root handler inside the HTTP app; a placeholder handler makes that call a no-op.
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        return make()
    finally:
        root.removeHandler(guard)


def build_mcp_server(get_searcher: SearcherSource, *,
                     lifespan: Callable[[MCPServer], AbstractAsyncContextManager[Any]]
                     | None = None,
                     log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None,
                     ) -> MCPServer:
    """The MCP server with its three tools; ``get_searcher`` is called on every tool call,
    so a reloaded index is picked up and a not-ready one is reported, not crashed on (for a
    fixed searcher: ``lambda: contextlib.nullcontext(searcher)``).
    ``log_level`` None leaves the host's logging configuration alone."""
    server = _new_server(lifespan, log_level)

    def search_passages(
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS,
                                    description="The question, in Chinese (simplified or "
                                                "traditional) or English.")],
        top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K,
                                    description="How many passages to return.")] = 5,
        doc_ids: Annotated[list[str] | None, Field(description="Only search these documents "
                                                               "(doc_id values of "
                                                               "list_documents).")] = None,
    ) -> SearchResponse:
        with _as_tool_errors(), get_searcher() as searcher:
            return SearchResponse.of(searcher.search(query, top_k, "auto", doc_ids))

    def get_passage(
        doc_id: Annotated[str, Field(min_length=1, description="The document's doc_id.")],
        paragraph: Annotated[int, Field(ge=1, description="1-based paragraph number, as in "
                                                          "a search result.")],
    ) -> PassageInContext:
        with _as_tool_errors(), get_searcher() as searcher:
            return passage_in_context(searcher, doc_id, paragraph)

    def list_documents() -> DocumentList:
        with _as_tool_errors(), get_searcher() as searcher:
            return list_document_summaries(searcher)

    for fn, description, title in (
        (search_passages, SEARCH_DESCRIPTION, "Search cited passages"),
        (get_passage, PASSAGE_DESCRIPTION, "Read a paragraph in context"),
        (list_documents, DOCUMENTS_DESCRIPTION, "List the documents"),
    ):
        server.add_tool(fn, title=title, description=description, annotations=_READ_ONLY)
    return server


async def function_definitions(server: MCPServer) -> list[dict[str, Any]]:
    """The server's tools as OpenAI-style function definitions, for chat applications that
    register functions rather than speak MCP."""
    return [{"type": "function",
             "function": {"name": t.name, "description": t.description or "",
                          "parameters": t.input_schema}}
            for t in await server.list_tools()]


def state_searcher(state: "ServiceState", wait_s: float = 30.0) -> SearcherSource:
    """The service's searcher, waiting up to ``wait_s`` while the model and index are still
    loading (a chat tool's first call often comes right after start-up); then the usual
    IndexNotReady, which the tools report as an error message."""
    def get() -> AbstractContextManager[Searcher]:
        deadline = time.monotonic() + wait_s
        while state.loading and state.searcher is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if state.stale():
            state.reload_if_stale()
        return state.lease()

    return get


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def dns_rebinding_protection(host: str, allowed: list[str]) -> TransportSecuritySettings:
    """Which Host (and Origin) headers /mcp accepts. A service bound to loopback accepts
    loopback names only (a web page cannot reach it through a rebound DNS name); one bound to
    another address on purpose (``--host 0.0.0.0`` in a container) is reached by names the
    service cannot know, so the check is off, unless ``allowed`` names them."""
    if not allowed and host not in _LOOPBACK:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = ["127.0.0.1", "localhost", "[::1]", *allowed]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[p for n in names for p in (n, f"{n}:*")],
        allowed_origins=[p for n in names for scheme in ("http", "https")
                         for p in (f"{scheme}://{n}", f"{scheme}://{n}:*")])


class StreamableHTTPEndpoint:
    """The ASGI endpoint of MCP over streamable HTTP. Stateless: each request stands alone,
    so any worker can answer it and a restart breaks no client session. The SDK's session
    manager runs once only, so every app lifespan (``running``) makes a fresh one."""

    def __init__(self, server: MCPServer, host: str,
                 allowed_hosts: list[str] | None = None) -> None:
        self.server = server
        self.host = host
        self.security = dns_rebinding_protection(host, allowed_hosts or [])

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self.server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True,
                                        host=self.host, transport_security=self.security)
        async with self.server.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.server.session_manager.handle_request(scope, receive, send)


def run_stdio(settings: "Settings") -> None:
    """Serve the tools on stdin/stdout until the client closes them. The model and index
    load in the background once the transport is up, so the client's handshake is fast."""
    from qa.service.state import ServiceState

    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        state.start_background_load()
        try:
            yield {}
        finally:
            state.close()

    build_mcp_server(state_searcher(state, wait_s=120.0), lifespan=lifespan,
                     log_level="INFO").run("stdio")
