"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from starlette.routing import Route

from qa import __version__
from qa.api.answer_routes import router as answer_router
from qa.api.document_routes import router as document_router
from qa.api.errors import BodyLimitMiddleware, install_error_handlers
from qa.api.routes import router
from qa.api.tool_routes import router as tool_router
from qa.config import Settings, get_settings
from qa.encoders.base import Embedder
from qa.service.state import ServiceState
from qa.service.writes import service_writer

_STATIC = Path(__file__).resolve().parent.parent / "static"

DESCRIPTION = """Semantic search over Chinese policy documents (shipped: the plenary sessions
of the CPC Wuhan Municipal Committee). Ask in Chinese (simplified or traditional) or English;
every passage comes with a citation you can check: document, paragraph, exact character
offsets into the source file, speaker and date."""


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None,
               background: bool = True) -> FastAPI:
    """Build the app. ``embedder`` overrides the configured one (tests pass a fake);
    ``background=False`` loads synchronously at startup."""
    settings = settings or get_settings()
    state = ServiceState(settings, embedder)
    writer = service_writer(settings, state, in_process=embedder is not None)
    # MCP over streamable HTTP at /mcp, on this app's state (imported here: it uses qa.api).
    from qa.mcp.server import StreamableHTTPEndpoint, build_mcp_server, state_searcher

    mcp = StreamableHTTPEndpoint(build_mcp_server(state_searcher(state)), host=settings.host)

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
        if state.searcher is not None:
            state.searcher.index.store.close()

    app = FastAPI(title="qa: cited search over Chinese policy documents", version=__version__,
                  description=DESCRIPTION, lifespan=lifespan)
    app.state.qa = state
    app.state.settings = settings
    app.state.mcp = mcp.server
    app.state.writer = writer
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       upload_bytes=settings.max_upload_bytes,
                       upload_routes=frozenset({("POST", "/documents")}))
    app.include_router(router)
    app.include_router(document_router)
    app.include_router(answer_router)
    app.include_router(tool_router)
    app.router.routes.append(Route("/mcp", mcp, include_in_schema=False))

    @app.get("/", include_in_schema=False, response_model=None)
    def home() -> FileResponse | HTMLResponse:
        page = _STATIC / "index.html"
        if page.exists():
            return FileResponse(page)
        return HTMLResponse('<a href="/docs">API docs</a>')

    return app
