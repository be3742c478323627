"""The page in a real browser: Playwright driving the system's Chromium against a real
server (uvicorn on a loopback port) over the shipped corpus and the real model.

Chromium is Debian's (/usr/bin/chromium, or QA_CHROMIUM): ``playwright install`` downloads
browsers, which cannot work offline. Screenshots of each state go to QA_SCREENSHOTS
(default test-artifacts/screenshots, git-ignored).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ..conftest import CORPUS, ROOT

CHROMIUM = Path(os.environ.get("QA_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("QA_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))

LOCAL_HOSTS = {"127.0.0.1", "localhost"}

expect.set_options(timeout=20_000)  # the first answer of a cold model on a busy CI machine


# Package scope: both end with the last browser test. Playwright's sync API keeps an event
# loop running in the main thread while it is open, which later asyncio tests cannot share.
@pytest.fixture(scope="package")
def server(real_index_dir, real_embedder) -> Iterator[str]:
    """The app as ``qa serve`` runs it, on a free loopback port; yields its base URL."""
    import uvicorn

    from qa.api import create_app
    from qa.config import Settings

    settings = Settings(corpus_dir=CORPUS, index_dir=real_index_dir, allow_download=False)
    app = create_app(settings, embedder=real_embedder, background=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the server thread starts: the browser's first connection waits in
    # the backlog until uvicorn has loaded the index and accepts it, so no polling is needed.
    sock.listen(128)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium fonts-noto-cjk "
                    "(or set QA_CHROMIUM) to run the browser tests")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()


@dataclass
class Watch:
    """What a page did that a user should never see: console errors, uncaught exceptions,
    and requests to anywhere but this machine."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def on_request(self, url: str) -> None:
        self.requests.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.hostname not in LOCAL_HOSTS:
            self.external.append(url)

    def check(self, allow: tuple[str, ...] = ()) -> None:
        """No page error, no request off the machine, and no console error except the ones
        a test provoked on purpose (Chromium logs every failed HTTP status it is served)."""
        errors = [e for e in self.console_errors if not any(a in e for a in allow)]
        assert not self.page_errors, self.page_errors
        assert not errors, errors
        assert not self.external, self.external


@dataclass
class Session:
    page: Page
    watch: Watch
    base: str

    def open(self, path: str = "/") -> Page:
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _session(browser: Browser, server: str, *, width: int = 1280, height: int = 900,
             locale: str = "en-US") -> Iterator[Session]:
    context = browser.new_context(viewport={"width": width, "height": height}, locale=locale)
    watch = Watch()
    context.on("request", lambda r: watch.on_request(r.url))
    page = context.new_page()
    page.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error"
            else None)
    page.on("pageerror", lambda e: watch.page_errors.append(str(e)))
    try:
        yield Session(page, watch, server)
    finally:
        context.close()


@pytest.fixture
def en(browser: Browser, server: str) -> Iterator[Session]:
    """A desktop browser whose language is English."""
    yield from _session(browser, server)


@pytest.fixture
def zh(browser: Browser, server: str) -> Iterator[Session]:
    """A desktop browser whose language is Chinese."""
    yield from _session(browser, server, locale="zh-CN")


@pytest.fixture
def phone(browser: Browser, server: str) -> Iterator[Session]:
    """A 390 x 844 phone screen."""
    yield from _session(browser, server, width=390, height=844, locale="zh-CN")
