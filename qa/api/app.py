"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route

from qa import __version__
from qa.api.answer_routes import router as answer_router
from qa.api.document_routes import router as document_router
from qa.api.errors import BodyLimitMiddleware, install_error_handlers
from qa.api.pages import install_pages
from qa.api.routes import router
from qa.api.source_routes import router as source_router
from qa.api.tool_routes import router as tool_router
from qa.config import Settings, get_settings
from qa.encoders.base import Embedder
from qa.mcp.server import StreamableHTTPEndpoint, build_mcp_server, state_searcher
from qa.service.state import ServiceState
from qa.service.writes import service_writer

DESCRIPTION = """Semantic search over Chinese policy documents (shipped: the plenary sessions
of the CPC Wuhan Municipal Committee). Ask in Chinese (simplified or traditional) or English;
every passage comes with a citation you can check: document, page, paragraph, exact
character offsets into the document's text (GET /documents/{doc_id}/text), speaker and date.
Documents may be text, Markdown, PDF (scanned pages are OCRed), Word, web pages or images."""


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None,
               background: bool = True) -> FastAPI:
    """Build the app. ``embedder`` overrides the configured one (tests pass a fake);
    ``background=False`` loads synchronously at startup."""
    settings = settings or get_settings()
    state = ServiceState(settings, embedder)
    writer = service_writer(settings, state, in_process=embedder is not None)
    # MCP over streamable HTTP at /mcp, on this app's state. The MCP server knows nothing of
    # HTTP routes: both edges share qa.service, and only this factory mounts one in the other.
    mcp = StreamableHTTPEndpoint(build_mcp_server(state_searcher(state)), host=settings.host,
                                 allowed_hosts=settings.mcp_allowed_hosts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            state.start_background_load()
        else:
            state.load()
        writer.start()
        async with mcp.running():
            yield
        writer.stop()
        state.close()

    app = FastAPI(title="qa: cited search over Chinese policy documents", version=__version__,
                  description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # served offline by install_pages
    app.state.qa = state
    app.state.settings = settings
    app.state.mcp = mcp.server
    app.state.writer = writer
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       timeout_s=settings.body_timeout_s,
                       upload_bytes=settings.max_upload_bytes,
                       upload_routes=frozenset({("POST", "/documents")}))
    app.include_router(router)
    app.include_router(document_router)
    app.include_router(source_router)
    app.include_router(answer_router)
    app.include_router(tool_router)
    app.router.routes.append(Route("/mcp", mcp, include_in_schema=False))
    install_pages(app)
    return app
