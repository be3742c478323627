"""What a browser loads: the page, its static files, the favicon, and the API docs served
offline.

FastAPI's own /docs and /redoc pull Swagger UI and ReDoc from a CDN (and ReDoc its fonts
from Google), which leaves a blank page on a machine without internet. Swagger UI's files
come instead from the ``fastapi-offline`` package (MIT; Swagger UI 5 bundled as static
files) and are served by this app, so the docs work wherever the API does.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("qa.api")

STATIC = Path(__file__).resolve().parent.parent / "static"
DOCS_ASSETS = "/docs-assets"
# The page loads nothing from anywhere else, and the browser enforces it.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
               "form-action 'self'; frame-ancestors 'none'")
# Swagger UI's online validator badge would fetch an image from validator.swagger.io.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def docs_assets() -> Path | None:
    """The folder of bundled Swagger UI and ReDoc files, or None without the package."""
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def install_pages(app: FastAPI) -> None:
    """Routes for the page (/), /static, /favicon.ico, and the offline /docs (/redoc leads
    there). The app must be created with ``docs_url=None, redoc_url=None``."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False, response_model=None)
    def home() -> FileResponse | HTMLResponse:
        page = STATIC / "index.html"
        if page.exists():
            return FileResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})
        return HTMLResponse('<a href="/docs">API docs</a>')

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")

    assets = docs_assets()
    if assets is None:
        log.warning("fastapi-offline is not installed: /docs is off "
                    "(pip install fastapi-offline); /openapi.json still works")
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API docs",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}/favicon.ico",
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **SWAGGER_PARAMETERS})

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    # ReDoc's bundle fetches its logo from cdn.redoc.ly whatever it is told; one offline
    # reference is enough, so /redoc leads to /docs.
    @app.get("/redoc", include_in_schema=False)
    def redoc() -> RedirectResponse:
        return RedirectResponse("/docs", status_code=307)
