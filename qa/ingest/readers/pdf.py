"""PDF with pypdfium2 (PDFium; Apache-2.0/BSD, where PyMuPDF would be AGPL).

Each page's text layer is read character by character with its position, cut into lines,
and handed to :mod:`qa.ingest.readers.layout`, which re-joins paragraphs across line and
page breaks and drops running headers, footers and page numbers. A page without a usable
text layer (a scan, or text whose font maps to no Unicode) is rendered and OCRed.
"""

from __future__ import annotations

import threading
import unicodedata
from pathlib import Path
from typing import Any

from qa.ingest.readers.base import Extracted, Limits, ReadError, metadata_title
from qa.ingest.readers.layout import Line, read_pages
from qa.ingest.readers.ocr import OCR_SIDE, ocr_lines

# Scanned pages are rendered at 150 dpi: body text of 10.5 pt is then ~22 px high, which the
# recogniser reads well, and an A4 page (1240x1754 px) stays under the detector's 2000 px.
OCR_DPI = 150
# A page with fewer readable characters than this has no usable text layer.
MIN_PAGE_CHARS = 10
# A text layer with more than this share of unmappable characters is garbage.
MAX_JUNK = 0.3
# A page mostly covered by an image, with only this much text, is a scan with a line or two
# typed on it (a header, a stamp): OCR reads the image and the typed text alike.
SCAN_COVER = 0.5
SCAN_MAX_CHARS = 200

# PDFium is not thread-safe: one document operation at a time in this process.
_PDFIUM = threading.Lock()


def _junk(ch: str) -> bool:
    return ch == "\ufffd" or unicodedata.category(ch) in ("Co", "Cn", "Cc", "Cs")


def _text_lines(page: Any, number: int) -> tuple[list[Line], int, int]:
    """The page's text layer as lines, and its counts of readable and junk characters."""
    import pypdfium2.raw as pdfium_c

    height = page.get_height()
    textpage = page.get_textpage()
    try:
        lines: list[Line] = []
        chars: list[tuple[str, tuple[float, float, float, float]]] = []
        last: tuple[float, float, float, float] | None = None  # the line's last glyph box
        good = junk = 0

        def flush() -> None:
            nonlocal last
            last = None
            text = "".join(c for c, _ in chars).strip()
            boxes = [b for c, b in chars if not c.isspace()]
            if text and boxes:
                lines.append(Line(text=text, x0=min(b[0] for b in boxes),
                                  x1=max(b[2] for b in boxes),
                                  top=height - max(b[3] for b in boxes),
                                  bottom=height - min(b[1] for b in boxes), page=number))
            chars.clear()

        for i in range(textpage.count_chars()):
            ch = chr(pdfium_c.FPDFText_GetUnicode(textpage, i) or 0xFFFD)
            if ch in "\r\n":
                flush()
                continue
            if ch.isspace():
                chars.append((" ", (0.0, 0.0, 0.0, 0.0)))
                continue
            if _junk(ch):
                junk += 1
                continue
            good += 1
            box = textpage.get_charbox(i, loose=True)
            # A character below the line and back at the left: a new line PDFium did not
            # mark with a line break.
            if last is not None and box[3] < last[1] and box[0] < last[0]:
                flush()
            chars.append((ch, box))
            last = box
        flush()
        return lines, good, junk
    finally:
        textpage.close()


def _image_share(page: Any) -> float:
    """How much of the page its images cover (overlaps counted twice; capped at 1)."""
    import pypdfium2.raw as pdfium_c

    area = max(1.0, page.get_width() * page.get_height())
    covered = 0.0
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        left, bottom, right, top = obj.get_bounds()
        covered += max(0.0, right - left) * max(0.0, top - bottom)
    return min(1.0, covered / area)


def _open(path: Path, raw: bytes, limits: Limits) -> Any:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ReadError(f"{path.name}: the PDF is encrypted (password-protected); save an "
                            "unprotected copy to index it") from exc
        raise ReadError(f"{path.name}: not a readable PDF, damaged or truncated ({exc})") from exc
    count = len(pdf)
    if count == 0 or count > limits.max_pages:
        pdf.close()
        raise ReadError(f"{path.name}: the PDF has no pages" if count == 0 else
                        f"{path.name}: {count} pages, over the limit of {limits.max_pages} "
                        "pages per file")
    return pdf


def _page(pdf: Any, number: int) -> tuple[list[Line], Any]:
    """The page's lines, or ([], an image to OCR) when it has no usable text layer."""
    page = pdf[number - 1]
    try:
        lines, good, junk = _text_lines(page, number)
        usable = good >= MIN_PAGE_CHARS and junk <= MAX_JUNK * (good + junk)
        if usable and (good > SCAN_MAX_CHARS or _image_share(page) < SCAN_COVER):
            return lines, None
        if not (good or junk or _image_share(page)):
            return [], None  # a blank page
        scale = min(OCR_DPI / 72, OCR_SIDE / max(page.get_width(), page.get_height(), 1.0))
        return [], page.render(scale=scale).to_pil()
    finally:
        page.close()


class PdfReader:
    name = "pdf"

    def read(self, path: Path, raw: bytes, limits: Limits) -> Extracted:
        import pypdfium2 as pdfium

        # Every PDFium call holds the lock; OCR, the slow part, runs outside it, one page
        # image at a time (a thousand rendered pages would not fit in memory).
        with _PDFIUM:
            pdf = _open(path, raw, limits)
        try:
            with _PDFIUM:
                count = len(pdf)
                meta = pdf.get_metadata_dict()
            pages: list[list[Line]] = []
            scanned: list[int] = []
            empty: list[int] = []
            for number in range(1, count + 1):
                with _PDFIUM:
                    lines, image = _page(pdf, number)
                if image is not None:
                    scanned.append(number)
                    lines = ocr_lines(image, number)
                    del image
                    if not lines:
                        empty.append(number)
                pages.append(lines)
        except pdfium.PdfiumError as exc:
            raise ReadError(f"{path.name}: the PDF is damaged ({exc})") from exc
        finally:
            with _PDFIUM:
                pdf.close()
        text, starts, _ = read_pages(pages)
        if not text.strip():
            raise ReadError(f"{path.name}: no text found, neither in a text layer nor by OCR")
        warnings = []
        if scanned:
            warnings.append(f"{path.name}: {len(scanned)} of {count} pages are scans without a "
                            "usable text layer and were read by OCR")
        if empty:
            warnings.append(f"{path.name}: no text found on page(s) "
                            + ", ".join(map(str, empty)))
        return Extracted(text=text, media_type="application/pdf", reader=self.name,
                         markdown=True, rejoin_lines=False, pages=starts,
                         title=metadata_title(meta.get("Title"), path.stem),
                         warnings=tuple(warnings))
