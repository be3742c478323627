"""The page for everyone: the keyboard alone, a phone screen, both interface languages, the
offline API docs and the favicon."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from .conftest import Session

pytestmark = [pytest.mark.browser, pytest.mark.model]

EN_QUESTION = "How many academicians does Wuhan have?"
EVIDENCE = "71名院士"


def focused(page: Page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.className")


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width


def test_keyboard_alone_searches_and_opens_a_citation(en: Session) -> None:
    page = en.open("/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type(EN_QUESTION)
    order = []
    for _ in range(3):
        page.keyboard.press("Tab")
        order.append(focused(page))
    assert order == ["mode", "k", "go"]  # the form's controls in reading order
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # Enter in the question searches
    expect(page.locator("section.answer")).to_contain_text(EVIDENCE)
    for _ in range(30):  # the citations are reachable by Tab
        page.keyboard.press("Tab")
        if focused(page) == "marker":
            break
    assert focused(page) == "marker"
    assert page.evaluate("document.activeElement.matches(':focus-visible')")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    en.shot("keyboard-focus")
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#doc")
    expect(dialog.locator(".para.cited mark")).to_contain_text(EVIDENCE)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused(page) == "marker"
    en.watch.check()


def test_every_control_has_a_label(en: Session) -> None:
    page = en.open("/")
    page.locator("#docs-panel summary").click()
    unlabelled = page.evaluate("""() => [...document.querySelectorAll(
        'input, select, button, textarea')].filter(el => !el.labels?.length
        && !el.getAttribute('aria-label') && !el.textContent.trim()).map(el => el.outerHTML)""")
    assert unlabelled == []
    expect(page.get_by_label("Search by")).to_have_value("auto")
    modes = page.locator("#mode option").all_inner_texts()
    assert modes == ["Smart (recommended)", "Hybrid", "Meaning", "Keywords"]
    en.watch.check()


def test_a_phone_screen_has_no_horizontal_scroll(phone: Session) -> None:
    page = phone.open(f"/?q={quote(EN_QUESTION)}")
    expect(page.locator("section.answer")).to_contain_text(EVIDENCE)
    no_horizontal_scroll(page)
    phone.shot("phone-answer")
    page.locator(".quotes .marker").first.click()
    expect(page.locator("dialog#doc .para.cited")).to_be_in_viewport()
    no_horizontal_scroll(page)
    box = page.locator("dialog#doc").bounding_box()
    assert box and box["width"] <= 390
    phone.shot("phone-document")
    page.keyboard.press("Escape")
    page.locator("#docs-panel summary").click()
    expect(page.locator("#docs-list table")).to_be_visible()
    no_horizontal_scroll(page)
    phone.watch.check()


def test_the_language_follows_the_browser_and_the_toggle_is_remembered(zh: Session) -> None:
    page = zh.open(f"/?q={quote(EN_QUESTION)}")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_label("检索方式")).to_be_visible()
    expect(page.locator("#answer-h")).to_have_text("答案")
    page.get_by_role("button", name="Switch the interface to English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#answer-h")).to_have_text("Answer")  # results re-rendered
    expect(page.get_by_label("Search by")).to_be_visible()
    expect(page.locator("#go")).to_have_text("Search")
    assert page.title().startswith("Wuhan plenary documents")
    zh.shot("toggle-english")
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("button", name="切换为中文界面").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#go")).to_have_text("搜索")
    zh.watch.check()


def test_api_docs_render_offline(en: Session) -> None:
    page = en.open("/docs")
    expect(page.locator(".swagger-ui .info")).to_be_visible()
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("qa")
    expect(page.locator(".opblock-summary-path", has_text="/answer")).to_be_visible()
    en.shot("api-docs")
    page = en.open("/redoc")  # ReDoc's bundle fetches a logo from its CDN: /redoc is /docs
    expect(page.locator(".swagger-ui .info")).to_be_visible()
    en.watch.check()
    assert any(u.endswith("/docs-assets/swagger-ui-bundle.js") for u in en.watch.requests)


def test_favicon_is_served(en: Session) -> None:
    response = en.page.request.get(en.base + "/favicon.ico")
    assert response.status == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert response.body()[:4] == b"\x00\x00\x01\x00"  # an ICO header
    page = en.open("/")
    expect(page.locator("#q")).to_be_visible()
    assert any(u.endswith("/favicon.ico") or u.endswith("/favicon.svg")
               for u in en.watch.requests)
    en.watch.check()
