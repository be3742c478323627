"""Every reader on a real file of its kind: paragraphs and headings cut as a careful reader
would, offsets that reproduce the cited text, the right pages, page furniture gone."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from qa.ingest.chunking import chunk
from qa.ingest.corpus import load_document
from qa.ingest.readers import Limits, ReadError, read_file, reader_for
from qa.ingest.readers.text import decode

from . import doc_fixtures as fx

OCR_MIN_RATIO = 0.9  # OCR may miss a character or two; a paragraph must still be itself


def _doc_and_chunks(path: Path):
    doc = load_document(path)
    chunks = chunk(doc)
    for c in chunks:  # the invariant every citation rests on
        assert doc.text[c.char_start:c.char_end] == c.text
    return doc, chunks


def _lines(doc) -> list[str]:
    return doc.text.split("\n")


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _chunk_like(chunks, expected: str):
    best = max(chunks, key=lambda c: _similar(c.clean_text, expected))
    assert _similar(best.clean_text, expected) >= OCR_MIN_RATIO, (expected, best.clean_text)
    return best


# --- choosing the reader


@pytest.mark.parametrize("name, raw, expected", [
    ("report.txt", b"%PDF-1.7\n...", "pdf"),
    ("page.txt", b"<!DOCTYPE html><html><body>x</body></html>", "html"),
    ("page.htm", b"<html><body>x</body></html>", "html"),
    ("notes.md", b"<!DOCTYPE html><html><body>x</body></html>", "markdown"),
    ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "doc"),
    ("scan.pdf", b"\x89PNG\r\n\x1a\n" + bytes(100), "image"),
    ("notice.txt", "通知".encode("gb18030"), "text"),
])
def test_the_content_decides_when_it_is_sure(name, raw, expected):
    fmt, warning = reader_for(Path(name), raw)
    assert fmt == expected
    assert (warning is None) == (expected in ("text", "markdown") or name.endswith(".htm"))


def test_a_docx_named_doc_needs_no_libreoffice(tmp_path):
    raw = fx.make_docx(tmp_path / "x.docx").read_bytes()
    assert reader_for(Path("x.doc"), raw) == ("docx", None)


@pytest.mark.parametrize("name, raw, message", [
    ("sheet.xlsx", b"PK\x03\x04", "unsupported file type .xlsx"),
    ("README", b"hello", r"unsupported file type \(no extension\)"),
    ("fake.pdf", "这不是PDF".encode(), "fake.pdf: not a PDF"),
    ("fake.docx", b"plain words", "not a Word document"),
    ("fake.png", b"plain words", "not an image"),
])
def test_a_file_that_is_not_what_it_says_is_refused(name, raw, message):
    with pytest.raises(ReadError, match=message):
        reader_for(Path(name), raw)


# --- plain text


TEXT = "关于加快发展养老服务业的实施意见\n到2025年，全市养老床位总数达到8万张。\n"
TRAD = "關於實施人才引進計劃的通知\n對新引進的博士研究生，給予每人15萬元生活補貼。\n"


@pytest.mark.parametrize("text, encoding, charset", [
    (TEXT, "utf-8", "utf-8"),
    (TEXT, "utf-8-sig", "utf-8"),
    (TEXT, "utf-16", "utf-16"),
    (TEXT, "utf-16-be", "utf-16-be"),
    (TEXT, "gb18030", "gb18030"),
    (TEXT.replace("8万张", "8萬張"), "gbk", "gb18030"),
    (TRAD, "big5", "big5"),
    ("武汉", "gbk", "gb18030"),  # two CJK characters that also decode as (rare) Big5
])
def test_text_in_every_common_chinese_encoding(tmp_path, text, encoding, charset):
    path = tmp_path / "doc.txt"
    path.write_bytes(text.encode(encoding))
    doc, chunks = _doc_and_chunks(path)
    assert doc.text == text  # the BOM is gone, nothing else changed
    assert doc.media_type == f"text/plain; charset={charset}"
    assert doc.title == text.split("\n")[0]
    assert "\ufeff" not in doc.title and not doc.pages


def test_a_bom_never_reaches_the_title_or_a_citation(tmp_path):
    path = tmp_path / "plan.md"
    path.write_bytes(fx.BOM_MD.encode("utf-8-sig"))
    doc, chunks = _doc_and_chunks(path)
    assert doc.title == "科技创新行动方案" and doc.text.startswith("#")
    assert all("\ufeff" not in c.text for c in chunks)
    goal = next(c for c in chunks if "3.5%" in c.text)
    assert goal.section == ("科技创新行动方案", "主要目标")  # .md stays Markdown


@pytest.mark.parametrize("raw, reason", [
    (bytes(range(256)) * 8, "does not look like text|not text in any encoding"),
    (b"\xff\xfe" + "通知".encode("utf-16-le") + b"\x00", "not valid UTF-16"),
])
def test_bytes_that_are_not_text_are_refused_with_the_reason(raw, reason):
    with pytest.raises(ReadError, match=reason) as err:
        decode(raw, "x.txt")
    assert "GB18030 -t" not in err.value.message  # no advice to convert from the wrong encoding


def test_a_file_that_is_only_whitespace_is_empty(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_bytes(" \n\u3000\n".encode())
    with pytest.raises(ReadError, match="blank.txt: the file is empty"):
        load_document(path)


# --- Word


def test_docx_headings_tables_and_lists(tmp_path):
    doc, chunks = _doc_and_chunks(fx.make_docx(tmp_path / "renewal.docx"))
    lines = _lines(doc)
    assert lines[:2] == [f"# {fx.DOCX_TITLE}", "## 一、总体要求"]
    assert "### （一）老旧小区改造" in lines
    assert "项目 | 目标 | 完成时限" in lines and "加装电梯 | 1000部 | 2025年底" in lines
    assert fx.DOCX_HEADER not in doc.text and fx.DOCX_FOOTER not in doc.text
    assert doc.title == fx.DOCX_TITLE and not doc.pages
    by_text = {c.text: c for c in chunks}
    assert by_text["按照先民生后提升的原则，优先实施水电气路等基础设施改造，同步推进加装电梯。"].section \
        == (fx.DOCX_TITLE, "二、重点任务", "（一）老旧小区改造")
    # List items and table rows have no full stop, and each stays a paragraph of its own.
    assert "加装电梯不少于1000部" in by_text and "新增停车位2万个" in by_text
    assert by_text["加装电梯 | 1000部 | 2025年底"].section[-1] == "（一）老旧小区改造"
    assert by_text["对汉口历史风貌区实施微改造，保留街巷肌理，严禁大拆大建。"].section[-1] \
        == "（二）历史街区保护"


def test_a_damaged_docx_is_refused(tmp_path):
    raw = fx.make_docx(tmp_path / "x.docx").read_bytes()
    path = tmp_path / "broken.docx"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError, match="broken.docx"):
        load_document(path)


# --- legacy Word


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_legacy_doc_through_libreoffice():
    doc, chunks = _doc_and_chunks(fx.DOC_FILE)
    assert doc.media_type == "application/msword" and doc.title == fx.DOC_TITLE
    grain = next(c for c in chunks if "一百五十万亩" in c.text)
    assert grain.section == (fx.DOC_TITLE, "一、粮食生产")


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_a_wps_file_and_a_conversion_that_takes_too_long(tmp_path):
    wps = tmp_path / "rural.wps"
    shutil.copy(fx.DOC_FILE, wps)
    doc = load_document(wps)
    assert doc.media_type == "application/vnd.ms-works" and "两万户" in doc.text
    with pytest.raises(ReadError, match="rural.wps: LibreOffice did not convert it within"):
        load_document(wps, limits=Limits(convert_timeout_s=0.05))


def test_legacy_doc_without_libreoffice_says_what_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ReadError) as err:
        load_document(fx.DOC_FILE)
    assert "rural.doc" in err.value.message
    assert "apt-get install libreoffice-writer-nogui" in err.value.message


# --- PDF with a text layer


def _page_texts(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path)
    try:
        return [pdf[i].get_textpage().get_text_range().replace("\r\n", "") for i in range(len(pdf))]
    finally:
        pdf.close()


def test_text_pdf_paragraphs_pages_and_furniture():
    doc, chunks = _doc_and_chunks(fx.PDF_FILE)
    raw_pages = _page_texts(fx.PDF_FILE)
    assert len(doc.pages) == len(raw_pages) >= 2
    assert all(fx.PDF_HEADER in p for p in raw_pages)  # the furniture is in the PDF ...
    assert fx.PDF_HEADER not in doc.text and "- 1 -" not in doc.text  # ... and not in the text
    lines = _lines(doc)
    # The title and the headings are set larger than the body: Markdown headings, by size.
    assert lines[:2] == [f"# {fx.PDF_TITLE}", "## 一、发展目标"] and "## 二、主要任务" in lines
    assert next(c for c in chunks if c.text.startswith("新建")).section == (fx.PDF_TITLE,
                                                                           "一、发展目标")
    assert "票价实行一小时内免费换乘，老年人和残疾人免费乘车。" in lines
    # Every paragraph of the source is one line, re-joined across line and page breaks.
    body = [t for kind, t in fx.PDF_PARAS if kind == "p"]
    assert sum(1 for ln in lines if ln.startswith(("第", "推广", "票价", "到", "新建"))) == len(body)
    # The paragraph that runs over the first page break is cited at the page where it starts.
    spanning = [c for c in chunks if c.page == 1 and doc.page_at(c.char_end - 1) == 2]
    assert len(spanning) == 1
    head, tail = spanning[0].text[:12], spanning[0].text[-12:]
    assert head in raw_pages[0] and tail in raw_pages[1] and tail not in raw_pages[0]
    last = next(c for c in chunks if c.text.startswith("票价"))
    assert last.page == len(raw_pages)
    assert "票价实行一小时内免费换乘" in raw_pages[last.page - 1]


def test_encrypted_and_damaged_pdfs_are_refused_clearly(tmp_path):
    with pytest.raises(ReadError, match="encrypted.pdf: the PDF is encrypted"):
        load_document(fx.ENCRYPTED_FILE)
    path = tmp_path / "truncated.pdf"
    path.write_bytes(fx.PDF_FILE.read_bytes()[:3000])
    with pytest.raises(ReadError, match="truncated.pdf: not a readable PDF"):
        load_document(path)


def test_page_and_size_limits(tmp_path):
    with pytest.raises(ReadError, match="over the limit of 1 pages per file"):
        read_file(fx.PDF_FILE, fx.PDF_FILE.read_bytes(), Limits(max_pages=1))
    with pytest.raises(ReadError, match="over the limit of 0 MB per file"):
        load_document(fx.PDF_FILE, limits=Limits(max_bytes=1000))


# --- OCR: scanned PDF and images


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    path = fx.make_scanned_pdf(tmp_path_factory.mktemp("scan") / "sorting.pdf")
    return _doc_and_chunks(path)


def test_scanned_pdf_is_read_by_ocr_into_paragraphs(scanned):
    doc, chunks = scanned
    assert any("2 of 2 pages are scans" in w for w in doc.warnings)
    assert len(doc.pages) == 2
    assert fx.SCAN_HEADER not in doc.text and "- 1 -" not in doc.text and "- 2 -" not in doc.text
    assert _lines(doc)[0].startswith("# ")  # set larger than the body: a heading
    assert _similar(_lines(doc)[0][2:], fx.SCAN_TITLE) >= OCR_MIN_RATIO
    first, spanning, last = (_chunk_like(chunks, p) for p in fx.SCAN_PARAS)
    assert len({first.paragraph, spanning.paragraph, last.paragraph}) == 3
    # The second paragraph runs from page 1 onto page 2: one paragraph, cited at page 1.
    assert spanning.page == 1 and doc.page_at(spanning.char_end - 1) == 2
    assert first.page == 1 and last.page == 2


def test_a_scan_with_a_line_of_typed_text_is_still_ocred(tmp_path):
    """A scanned page with a typed header added (a small text layer over a full-page image)
    is read by OCR; its text layer alone would lose the scanned body."""
    import ctypes

    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    pdf = pdfium.PdfDocument(fx.make_scanned_pdf(tmp_path / "scan.pdf"))
    page = pdf[0]
    typed = pdfium_c.FPDFPageObj_NewTextObj(pdf.raw, b"Helvetica", ctypes.c_float(12))
    text = ctypes.create_string_buffer("Notice 2024-17, received".encode("utf-16-le") + b"\0\0")
    pdfium_c.FPDFText_SetText(typed, ctypes.cast(text, ctypes.POINTER(pdfium_c.FPDF_WCHAR)))
    pdfium_c.FPDFPageObj_Transform(typed, 1, 0, 0, 1, 60, 460)
    pdfium_c.FPDFPage_InsertObject(page.raw, typed)
    pdfium_c.FPDFPage_GenerateContent(page.raw)
    pdf.save(tmp_path / "typed.pdf")
    pdf.close()
    doc, chunks = _doc_and_chunks(tmp_path / "typed.pdf")
    assert any("2 of 2 pages are scans" in w for w in doc.warnings)
    _chunk_like(chunks, fx.SCAN_PARAS[0])
    assert "2024-17" in doc.text


def test_an_image_is_read_by_ocr(tmp_path):
    doc, chunks = _doc_and_chunks(fx.make_png(tmp_path / "flood.png"))
    assert doc.media_type == "image/png" and not doc.pages
    for para in fx.PNG_PARAS:
        assert _chunk_like(chunks, para).page is None


def test_an_image_that_is_not_one_is_refused(tmp_path):
    path = tmp_path / "scan.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(50))
    with pytest.raises(ReadError, match="scan.jpg: not a readable image"):
        load_document(path)


# --- web pages


def test_html_main_content_without_navigation_comments_or_scripts(tmp_path):
    path = tmp_path / "business.htm"
    path.write_text(fx.html_page(), encoding="utf-8")
    doc, chunks = _doc_and_chunks(path)
    assert doc.title == fx.HTML_TITLE and doc.date == fx.HTML_DATE
    assert doc.media_type == "text/html"
    for junk in [*fx.HTML_NAV, fx.HTML_COMMENT, fx.HTML_FOOTER, "不应出现的脚本文字", "评论一下",
                 "当前位置"]:
        assert junk not in doc.text, junk
    by_text = {c.text: c for c in chunks}
    for para in fx.HTML_PARAS:
        assert by_text[para].section == (fx.HTML_TITLE, "一、提升政务服务效率")


def test_html_in_a_legacy_encoding(tmp_path):
    path = tmp_path / "gb.html"
    path.write_bytes(fx.html_page().replace('charset="utf-8"', 'charset="gb2312"')
                     .encode("gb18030"))
    doc = load_document(path)
    assert fx.HTML_PARAS[0] in doc.text
