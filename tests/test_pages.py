"""What a browser loads, checked without one: the page and its files are served and local,
the favicon exists, and the API docs are served by the app itself (no CDN). The page's
behaviour is tested in Chromium in tests/browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app

STATIC = Path(__file__).resolve().parents[1] / "qa" / "static"
URL = re.compile(r"""(?:https?:)?//[\w.-]+""")


@pytest.fixture
def client(settings, fake_embedder):
    # No index: the page, the favicon and the docs must not depend on one.
    with TestClient(create_app(settings, embedder=fake_embedder, background=False)) as c:
        yield c


def test_the_page_and_every_file_it_loads_are_served(client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="(/[^"]*)"', r.text)
    imports = {f"/static/{m}" for f in STATIC.glob("*.js")
               for m in re.findall(r'from "\./([\w.]+)"', f.read_text("utf-8"))}
    assert "/static/app.js" in refs and "/static/text.js" in imports
    for path in set(refs) | imports:
        assert client.get(path).status_code == 200, path


def test_no_static_file_points_off_the_machine() -> None:
    for f in STATIC.iterdir():
        if f.suffix in (".html", ".js", ".css", ".svg"):
            text = f.read_text("utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
            assert not URL.findall(text), (f.name, URL.findall(text))


def test_favicon(client) -> None:
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00"


def test_api_docs_are_served_offline(client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
    assert "/docs-assets/swagger-ui-bundle.js" in assets
    assert not [a for a in assets if URL.match(a)], assets
    assert "cdn" not in r.text and '"validatorUrl": null' in r.text
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/docs/oauth2-redirect").status_code == 200
    r = client.get("/redoc", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/docs"


def test_a_missing_static_file_is_a_clean_404(client) -> None:
    r = client.get("/static/nope.js")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
