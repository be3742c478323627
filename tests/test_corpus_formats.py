"""A corpus folder of mixed formats: bad files are skipped and named, never block the others;
the index keeps each document's text as read, and the API serves it and the original file
so that every citation can be checked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from qa.api import create_app
from qa.cli import app as cli_app
from qa.config import Settings
from qa.index.build import build_index
from qa.ingest import readers
from qa.ingest.corpus import load_corpus
from qa.ingest.readers import Limits

from . import doc_fixtures as fx


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Good files of several formats, and one bad file of each kind of badness."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    fx.make_docx(corpus / "renewal.docx")
    shutil.copy(fx.PDF_FILE, corpus / "transport.pdf")
    (corpus / "business.html").write_text(fx.html_page(), encoding="utf-8")
    (corpus / "elderly.txt").write_bytes(fx.GB_TEXT.encode("gb18030"))
    (corpus / "talent.txt").write_bytes(fx.BIG5_TEXT.encode("big5"))
    (corpus / "talent.meta.json").write_text(json.dumps({"title": "人才引进", "date": "2024-03-01"}),
                                             encoding="utf-8")
    # The bad ones.
    (corpus / "truncated.pdf").write_bytes(fx.PDF_FILE.read_bytes()[:2000])
    shutil.copy(fx.ENCRYPTED_FILE, corpus / "locked.pdf")
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "budget.xlsx").write_bytes(b"PK\x03\x04 not really")
    (corpus / "dated.txt").write_text("一段正文。\n", encoding="utf-8")
    (corpus / "dated.meta.json").write_text(json.dumps({"date": ["2024", "03"]}), encoding="utf-8")
    outside = tmp_path / "secret.txt"
    outside.write_text("不应被索引的文件内容。\n", encoding="utf-8")
    os.symlink(outside, corpus / "link.txt")
    (corpus / "renewal.htm").write_text("<p>重名</p>", encoding="utf-8")  # the .docx's id
    return corpus


BAD = {
    "truncated.pdf": "not a readable PDF",
    "locked.pdf": "encrypted",
    "empty.txt": "the file is empty",
    "budget.xlsx": "unsupported file type .xlsx",
    "dated.txt": "date must be a string",
    "link.txt": "outside the corpus folder",
    "renewal.htm": "renewal.docx already has the id 'renewal'",
}


def test_bad_files_are_skipped_with_their_reason_and_the_good_ones_read(mixed):
    loaded = load_corpus(mixed)
    assert sorted(d.doc_id for d in loaded.documents) == [
        "business", "elderly", "renewal", "talent", "transport"]
    assert set(loaded.failed) == set(BAD)
    for name, reason in BAD.items():
        assert reason in loaded.failed[name], (name, loaded.failed[name])
    talent = next(d for d in loaded.documents if d.doc_id == "talent")
    assert talent.title == "人才引进" and talent.date == "2024-03-01"
    assert any("Big5" in w for w in loaded.warnings["talent.txt"])


def test_limits_per_file(mixed):
    loaded = load_corpus(mixed, limits=Limits(max_bytes=20_000, max_pages=50))
    assert "over the limit of 0 MB per file" in loaded.failed["transport.pdf"]
    loaded = load_corpus(mixed, limits=Limits(max_pages=1))
    assert "over the limit of 1 pages" in loaded.failed["transport.pdf"]


def test_the_build_reports_what_it_skipped_and_qa_index_prints_it(mixed, tmp_path,
                                                                fake_embedder, monkeypatch):
    report = build_index(mixed, tmp_path / "index", fake_embedder)
    assert set(report.failed) == set(BAD) and len(report.added) == 5
    monkeypatch.setenv("QA_EMBEDDER", "hashing")
    result = CliRunner().invoke(cli_app, ["index", "--corpus", str(mixed),
                                          "--index", str(tmp_path / "index2")])
    assert result.exit_code == 0, result.output
    for name, reason in BAD.items():
        line = next(ln for ln in result.output.splitlines() if f"skipped {name}" in ln)
        assert reason in line


def test_an_unchanged_file_is_not_read_again(mixed, tmp_path, fake_embedder, monkeypatch):
    index = tmp_path / "index"
    build_index(mixed, index, fake_embedder)

    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged PDF was read again")

    monkeypatch.setattr(readers.READERS["pdf"], "read", refuse)
    report = build_index(mixed, index, fake_embedder)
    assert "transport" in report.unchanged and "transport.pdf" not in report.failed
    (mixed / "transport.pdf").write_bytes(fx.PDF_FILE.read_bytes() + b"\n%changed\n")
    report = build_index(mixed, index, fake_embedder)
    assert "could not be read (AssertionError" in report.failed["transport.pdf"]


@pytest.fixture
def client(mixed, tmp_path, fake_embedder):
    index = tmp_path / "index"
    build_index(mixed, index, fake_embedder)
    settings = Settings(corpus_dir=mixed, index_dir=index, embedder="hashing",
                        allow_download=False)
    with TestClient(create_app(settings, embedder=fake_embedder, background=False)) as c:
        yield c


@pytest.mark.parametrize("query, doc_id", [
    ("轨道交通运营里程达到多少公里", "transport"),
    ("老旧小区改造目标", "renewal"),
    ("企业开办时间压缩", "business"),
    ("养老床位总数", "elderly"),
    ("博士研究生生活补贴", "talent"),
])
def test_every_result_is_a_slice_of_the_served_text(client, query, doc_id):
    results = client.post("/search", json={"query": query, "top_k": 10}).json()["results"]
    assert doc_id in [r["doc_id"] for r in results]
    for r in results:
        served = client.get(f"/documents/{r['doc_id']}/text")
        assert served.status_code == 200
        assert served.headers["content-type"] == "text/plain; charset=utf-8"
        assert served.text[r["char_start"]:r["char_end"]] == r["text"]


def test_pdf_results_carry_their_page_in_the_field_and_the_citation(client):
    results = client.post("/search", json={"query": "票价一小时内免费换乘", "top_k": 3,
                                           "doc_ids": ["transport"]}).json()["results"]
    top = results[0]
    assert top["text"].startswith("票价实行一小时内免费换乘")
    assert top["page"] == 2 and "第2页 第" in top["citation"]
    detail = client.get("/documents/transport").json()
    assert detail["media_type"] == "application/pdf" and detail["page_count"] == 2
    assert {p["page"] for p in detail["paragraphs"]} == {1, 2}
    html = client.post("/search", json={"query": "企业开办", "doc_ids": ["business"]}).json()
    assert html["results"][0]["page"] is None and "页" not in html["results"][0]["citation"]


def test_the_original_file_is_served_with_its_media_type(client, mixed):
    r = client.get("/documents/transport/file")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content == (mixed / "transport.pdf").read_bytes()
    r = client.get("/documents/elderly/file")
    assert r.headers["content-type"] == "text/plain; charset=gb18030"
    assert r.content.decode("gb18030") == fx.GB_TEXT


def test_unknown_gone_or_escaped_files_are_404_json(client, mixed, tmp_path):
    for path in ("/documents/nope/text", "/documents/nope/file"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_document"
    (mixed / "renewal.docx").unlink()
    r = client.get("/documents/renewal/file")
    assert r.status_code == 404 and "no longer in the corpus folder" in r.json()["error"]["message"]
    # A file replaced by a link out of the folder is not followed.
    outside = tmp_path / "elsewhere.pdf"
    outside.write_bytes(b"%PDF-1.4 private")
    (mixed / "transport.pdf").unlink()
    os.symlink(outside, mixed / "transport.pdf")
    r = client.get("/documents/transport/file")
    assert r.status_code == 404 and b"private" not in r.content
