"""The search page as a person uses it: questions from the URL, the answer and its
highlighted quotes, citations opened in their document, the no-answer and error states,
a phone screen, the keyboard alone, both interface languages, and the offline API docs."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.sync_api import Route, expect

from .conftest import Session

pytestmark = [pytest.mark.browser, pytest.mark.model]

EN_QUESTION = "How many academicians does Wuhan have?"
ZH_QUESTION = "武汉有多少名院士?"
EVIDENCE = "71名院士"


def ask_url(question: str, **params: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"/?q={quote(question)}{extra}"


def test_english_question_from_the_url_shows_the_highlighted_answer(en: Session) -> None:
    page = en.open(ask_url(EN_QUESTION))
    answer = page.locator("section.answer")
    expect(answer.locator(".quotes li").first).to_be_visible()
    expect(answer).to_contain_text(EVIDENCE)
    # The quoted sentence is marked inside its passage, at its offsets.
    mark = page.locator("article.passage mark", has_text=EVIDENCE)
    expect(mark).to_have_count(1)
    assert mark.inner_text().endswith("。")  # the whole sentence, not a fragment
    # Every quote is marked, exactly, in its passage (the quotes of passage n are its marks).
    for item in answer.locator(".quotes li").all():
        n = item.locator(".marker").inner_text().strip("[]")
        marks = page.locator(f"#passage-{n} mark").all_inner_texts()
        assert item.locator(".quote").inner_text().strip() in [m.strip() for m in marks]
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#q")).to_have_value(EN_QUESTION)
    expect(answer.locator(".conf")).to_contain_text("Match confidence")
    en.shot("answer-en")
    en.watch.check()


def test_chinese_question_and_mode_from_the_url(zh: Session) -> None:
    bodies: list[dict] = []
    zh.page.on("request", lambda r: bodies.append(json.loads(r.post_data or "{}"))
               if r.url.endswith("/answer") else None)
    page = zh.open(ask_url(ZH_QUESTION, mode="hybrid"))
    expect(page.locator("section.answer")).to_contain_text(EVIDENCE)
    expect(page.locator("article.passage mark", has_text=EVIDENCE)).to_be_visible()
    expect(page.locator("#mode")).to_have_value("hybrid")
    assert bodies and bodies[0]["mode"] == "hybrid" and bodies[0]["question"] == ZH_QUESTION
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#answer-h")).to_have_text("答案")
    zh.shot("answer-zh")
    zh.watch.check()


def test_a_citation_opens_its_paragraph_in_the_document(en: Session) -> None:
    page = en.open(ask_url(EN_QUESTION))
    marker = page.locator(".quotes .marker").first
    marker.click()
    dialog = page.locator("dialog#doc")
    expect(dialog).to_be_visible()
    cited = dialog.locator(".para.cited")
    expect(cited).to_have_count(1)
    expect(cited.locator("mark")).to_contain_text(EVIDENCE)
    expect(cited).to_be_in_viewport()
    expect(cited).to_be_focused()
    # Its neighbours, its section and the document's date are there to read it in context.
    number = int(re.search(r"\d+", cited.locator(".pnum").inner_text()).group())
    expect(dialog.locator(f"#para-{number - 1}")).to_be_visible()
    expect(dialog.locator(f"#para-{number + 1}")).to_be_attached()
    expect(dialog.locator(".doc-section").first).to_be_visible()
    expect(dialog.locator("#doc-meta")).to_contain_text("2020-06-28")
    en.shot("document-view")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(marker).to_be_focused()
    en.watch.check()


def test_a_passage_citation_opens_the_document_too(en: Session) -> None:
    page = en.open(ask_url(EN_QUESTION))
    passage = page.locator("article.passage").first
    passage.locator("button.cite").click()
    expect(page.locator("dialog#doc .para.cited mark")).to_contain_text(EVIDENCE)
    en.watch.check()


def test_a_missing_original_file_is_said_not_followed(en: Session) -> None:
    page = en.open(ask_url(EN_QUESTION))
    page.route(re.compile(r"/documents/[^/]+/file$"), lambda route: route.fulfill(
        status=404, json={"error": {"code": "not_found", "message": "Not Found"}}))
    page.locator(".quotes .marker").first.click()
    page.locator("#doc-file").click()
    expect(page.locator("#doc-file-status")).to_have_text(
        "The original file of this document is not available on this server.")
    expect(page.locator("#doc-file")).to_have_attribute("aria-disabled", "true")
    assert urlsplit(page.url).path == "/"  # the reader stays on the page
    en.watch.check(allow=("404",))


def test_an_existing_original_file_opens(en: Session) -> None:
    page = en.open(ask_url(EN_QUESTION))
    page.route(re.compile(r"/documents/[^/]+/file$"), lambda route: route.fulfill(
        status=200, body="原文", content_type="text/plain; charset=utf-8"))
    page.locator(".quotes .marker").first.click()
    with page.context.expect_page() as opened:
        page.locator("#doc-file").click()
    assert re.search(r"/documents/wuhan-[^/]+/file$", opened.value.url)
    en.watch.check()


def test_a_question_the_corpus_does_not_cover_says_so(zh: Session) -> None:
    page = zh.open(ask_url("巴黎今天的天气怎么样?"))
    expect(page.locator("#no-answer")).to_contain_text("很可能没有涉及这个问题")
    expect(page.locator("#passages-h")).to_have_text("最接近的段落（很可能不是答案）")
    expect(page.locator("section.answer")).to_have_count(0)
    expect(page.locator("article.passage").first).to_be_visible()
    zh.shot("no-answer")
    zh.watch.check()


def test_weak_passages_are_folded_below_the_strong_ones(en: Session) -> None:
    page = en.open(ask_url("光芯屏端网", mode="lexical", k="10"))
    folded = page.locator("details.weaker")
    expect(folded).to_be_visible()
    expect(folded.locator("summary")).to_contain_text("clearly weaker")
    expect(folded.locator("article.passage").first).to_be_hidden()
    folded.locator("summary").click()
    expect(folded.locator("article.passage").first).to_be_visible()
    en.watch.check()


def test_a_too_long_question_gets_a_plain_message(en: Session) -> None:
    page = en.open(ask_url("武" * 2001))
    expect(page.locator(".alert")).to_contain_text("The question is too long (2001 characters")
    assert not any(u.endswith("/answer") for u in en.watch.requests)
    en.shot("error-too-long")
    en.watch.check()


@pytest.mark.parametrize("fault, chinese, english", [
    ("loading", "服务器正在加载检索索引", "still loading its search index"),
    ("network", "无法连接到服务器", "Cannot reach the server"),
    ("crash", "服务器出错了", "Something went wrong on the server"),
])
def test_server_failures_get_plain_bilingual_messages(zh: Session, fault: str, chinese: str,
                                                      english: str) -> None:
    calls: list[str] = []

    def fail(route: Route) -> None:
        calls.append(route.request.url)
        if fault == "network":
            route.abort("connectionrefused")
        elif fault == "loading":
            route.fulfill(status=503, json={"error": {"code": "index_not_ready",
                                                      "message": "index is loading"}})
        else:
            route.fulfill(status=500, body="<html>Internal Server Error</html>")

    zh.page.route("**/answer", fail)
    page = zh.open(ask_url(ZH_QUESTION))
    alert = page.locator(".alert")
    expect(alert).to_contain_text(chinese)
    zh.shot(f"error-{fault}")
    page.locator("#lang").click()
    expect(alert).to_contain_text(english)
    with page.expect_request("**/answer"):
        alert.get_by_role("button", name="Try again").click()
    expect(alert).to_contain_text(english)
    assert len(calls) == 2
    text = alert.inner_text()
    assert "TypeError" not in text and "Failed to fetch" not in text and "<html>" not in text
    expect(page.locator("#go")).to_be_enabled()
    zh.watch.check(allow=("503", "500", "ERR_CONNECTION_REFUSED"))


def test_the_button_is_disabled_while_searching(en: Session) -> None:
    held: list[Route] = []
    en.page.route("**/answer", lambda route: held.append(route))
    page = en.open("/")
    page.locator("#q").fill(ZH_QUESTION)
    page.locator("#q").press("Enter")
    button = page.locator("#go")
    expect(button).to_be_disabled()
    expect(button).to_have_text("Searching…")
    en.shot("loading")
    held[0].continue_()
    expect(page.locator("section.answer")).to_be_visible()
    expect(button).to_be_enabled()
    expect(button).to_have_text("Search")
    en.watch.check()


def test_a_search_updates_the_shareable_url_and_back_restores(en: Session) -> None:
    page = en.open(ask_url(EN_QUESTION))
    expect(page.locator("section.answer")).to_be_visible()
    page.locator("#q").fill("光芯屏端网")
    page.locator("#mode").select_option("dense")
    page.locator("#go").click()
    expect(page).to_have_url(re.compile(r"mode=dense"))
    params = parse_qs(urlsplit(page.url).query)
    assert params == {"q": ["光芯屏端网"], "mode": ["dense"]}
    page.go_back()
    expect(page.locator("#q")).to_have_value(EN_QUESTION)
    expect(page.locator("#mode")).to_have_value("auto")
    expect(page.locator("section.answer")).to_contain_text(EVIDENCE)
    en.watch.check()
