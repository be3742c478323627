"""The document list and the upload form. Against the real server they must say that this
server takes no uploads; the upload flow itself runs against a fake of the documents API's
contract, fulfilled inside the browser by Playwright (nothing fake lives in the product)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Page, Route, expect

from .conftest import Session

pytestmark = [pytest.mark.browser, pytest.mark.model]

DOCUMENTS = re.compile(r"/documents(/[^/?]+)?(\?.*)?$")
FILE = {"name": "会议纪要.txt", "mimeType": "text/plain", "buffer": "武汉会议纪要。".encode()}


def fill_upload(page: Page, key: str = "s3cret") -> None:
    page.locator("#docs-panel summary").click()
    page.locator("#up-file").set_input_files(files=[FILE])
    page.get_by_label("Upload key").fill(key)
    page.get_by_label("Title (optional)").fill("会议纪要")


@dataclass
class FakeDocumentsAPI:
    """The documents API as its contract says: POST answers ``post`` statuses in turn, GET
    lists the uploaded document with the next of ``statuses``."""

    post: list[int] = field(default_factory=lambda: [202])
    statuses: list[str] = field(default_factory=lambda: ["queued", "indexing", "ready"])
    reason: str | None = None
    seen: list[dict] = field(default_factory=list)
    uploaded: bool = False

    def __call__(self, route: Route) -> None:
        req = route.request
        self.seen.append({"method": req.method, "url": req.url, "headers": req.headers,
                          "body": req.post_data_buffer})
        if req.method == "POST":
            status = self.post.pop(0) if len(self.post) > 1 else self.post[0]
            self.uploaded = status == 202
            body = ({"doc_id": "hui-yi-ji-yao", "status": "queued"} if status == 202
                    else {"error": {"code": "x", "message": "developer words"}})
            route.fulfill(status=status, json=body)
        elif req.method == "DELETE":
            self.uploaded = False
            route.fulfill(status=204)
        else:
            docs = []
            if self.uploaded:
                status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
                doc = {"doc_id": "hui-yi-ji-yao", "title": "会议纪要", "status": status}
                if status == "failed" and self.reason:
                    doc["reason"] = self.reason
                docs.append(doc)
            route.fulfill(status=200, json={"documents": docs})

    def posts(self) -> list[dict]:
        return [s for s in self.seen if s["method"] == "POST"]


def test_the_list_shows_each_document_and_uploads_are_off_without_a_key(en: Session) -> None:
    # The test server runs without QA_API_KEY: the real POST /documents answers 403.
    page = en.open("/")
    fill_upload(page)
    rows = page.locator("#docs-list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("searchable")
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#up-status")).to_contain_text(
        "Uploads are switched off on this server.")
    expect(page.locator("#up-go")).to_be_enabled()
    expect(page.locator("#up-progress")).to_be_hidden()
    en.shot("upload-switched-off")
    en.watch.check(allow=("403",))


def test_an_upload_shows_its_progress_and_status_until_searchable(en: Session) -> None:
    fake = FakeDocumentsAPI()
    en.page.route(DOCUMENTS, fake)
    page = en.open("/")
    fill_upload(page)
    page.get_by_role("button", name="Upload", exact=True).click()
    status = page.locator("#up-status")
    expect(status).to_contain_text("Indexing…")
    en.shot("upload-indexing")
    expect(status).to_contain_text("Done: the document is searchable.")
    expect(page.locator("#docs-list tbody tr", has_text="会议纪要")).to_contain_text("searchable")
    (post,) = fake.posts()
    assert post["headers"]["authorization"] == "Bearer s3cret"
    assert "replace" not in post["url"]
    body = post["body"]
    assert 'filename="' in body.decode("utf-8") and FILE["buffer"] in body
    assert re.search(rb'name="title"\r\n\r\n\xe4\xbc\x9a\xe8\xae\xae\xe7\xba\xaa\xe8\xa6\x81', body)
    assert page.locator("#up-progress").evaluate("p => p.value") == 100
    # The key stays in this tab only.
    assert page.evaluate("sessionStorage.getItem('qa.uploadKey')") == "s3cret"
    assert "s3cret" not in json.dumps(page.evaluate("Object.entries(localStorage)"))
    en.shot("upload-done")
    en.watch.check()


def test_an_existing_document_can_be_replaced(en: Session) -> None:
    fake = FakeDocumentsAPI(post=[409, 202], statuses=["ready"])
    en.page.route(DOCUMENTS, fake)
    page = en.open("/")
    fill_upload(page)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#up-status")).to_contain_text("already exists")
    page.get_by_role("button", name="Replace").click()
    expect(page.locator("#up-status")).to_contain_text("Done: the document is searchable.")
    urls = [p["url"] for p in fake.posts()]
    assert len(urls) == 2 and "replace" not in urls[0] and urls[1].endswith("?replace=true")
    en.watch.check(allow=("409",))


@pytest.mark.parametrize("status, message", [
    (401, "The upload key is wrong or missing."),
    (403, "Uploads are switched off on this server."),
    (413, "The file is too large for this server."),
])
def test_refused_uploads_say_why(zh: Session, status: int, message: str) -> None:
    zh.page.route(DOCUMENTS, FakeDocumentsAPI(post=[status]))
    page = zh.open("/")
    page.locator("#lang").click()
    fill_upload(page)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#up-status")).to_contain_text(message)
    expect(page.locator("#up-status")).not_to_contain_text("developer words")
    if status == 401:  # a wrong key is not kept
        assert page.evaluate("sessionStorage.getItem('qa.uploadKey')") is None
    zh.watch.check(allow=(str(status),))


def test_a_failed_indexing_shows_the_reason(en: Session) -> None:
    fake = FakeDocumentsAPI(statuses=["failed"], reason="the PDF has no text layer")
    en.page.route(DOCUMENTS, fake)
    page = en.open("/")
    fill_upload(page)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#up-status")).to_contain_text(
        "Indexing failed: the PDF has no text layer")
    row = page.locator("#docs-list tbody tr", has_text="会议纪要")
    expect(row).to_contain_text("failed")
    expect(row).to_contain_text("the PDF has no text layer")
    en.watch.check()


def test_a_document_is_deleted_with_the_key(en: Session) -> None:
    fake = FakeDocumentsAPI(statuses=["ready"])
    fake.uploaded = True
    en.page.route(DOCUMENTS, fake)
    page = en.open("/")
    fill_upload(page)
    en.page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete: 会议纪要").click()
    expect(page.locator("#up-status")).to_contain_text("The document was deleted.")
    expect(page.locator("#docs-list")).to_contain_text("No documents yet.")
    (delete,) = [s for s in fake.seen if s["method"] == "DELETE"]
    assert delete["url"].endswith("/documents/hui-yi-ji-yao")
    assert delete["headers"]["authorization"] == "Bearer s3cret"
    en.watch.check()
