"""Word documents (.docx) with python-docx.

Paragraphs and tables are read in document order, one line each: heading styles (Title,
Heading 1..9, 标题 1..9, or an outline level) become Markdown ``#`` lines, which the chunker
turns into the ``section`` breadcrumb; a table row becomes one line of its cells joined by
" | ". Running headers and footers are not part of the body and are left out.
"""

from __future__ import annotations

import re
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

from qa.ingest.readers.base import Extracted, Limits, ReadError, metadata_title
from qa.ingest.readers.layout import join

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)
_TITLE_STYLE = re.compile(r"^(?:title|标题)$", re.IGNORECASE)


def _one_line(text: str) -> str:
    """A paragraph's soft line breaks and tabs, joined the way its lines would be."""
    parts = [p.strip() for p in re.split(r"[\n\r\t\v]+", text) if p.strip()]
    out = parts[0] if parts else ""
    for part in parts[1:]:
        out += join(out, part) + part
    return out


def _outline_level(element: Any) -> int | None:
    from docx.oxml.ns import qn

    ppr = element.find(qn("w:pPr")) if element is not None else None
    lvl = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    if lvl is None:
        return None
    value = int(lvl.get(qn("w:val"), "9"))
    return value + 1 if value < 9 else None  # 9 means body text


def _heading_level(paragraph: Any) -> int | None:
    """0 for a title, n for a heading of level n, None for body text."""
    style = paragraph.style
    while style is not None:
        name = (style.name or "").strip()
        if _TITLE_STYLE.match(name):
            return 0
        m = _HEADING_STYLE.match(name)
        if m:
            return int(m.group(1))
        level = _outline_level(style.element)
        if level is not None:
            return level
        style = style.base_style
    return _outline_level(paragraph._p)


def _row_text(row: Any) -> str:
    cells: list[str] = []
    last = None
    for cell in row.cells:
        if cell._tc is last:  # a merged cell is listed once per grid column it spans
            continue
        last = cell._tc
        text = _one_line(" ".join(p.text for p in cell.paragraphs))
        if text:
            cells.append(text)
    return " | ".join(cells)


def read_docx(raw: bytes, name: str) -> tuple[str, str | None]:
    """(text with ``#`` headings, one paragraph or table row per line; the title if stated)."""
    import docx
    from docx.table import Table
    from lxml.etree import LxmlError

    try:
        document = docx.Document(BytesIO(raw))
        blocks = list(document.iter_inner_content())
        stated = metadata_title(document.core_properties.title, Path(name).stem)
    except (zipfile.BadZipFile, KeyError, ValueError, LxmlError) as exc:
        raise ReadError(f"{name}: not a readable Word document, damaged or not .docx "
                        f"({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # python-docx raises its own PackageNotFoundError and others
        raise ReadError(f"{name}: not a readable Word document ({exc})") from exc
    has_title = any(not isinstance(b, Table) and _heading_level(b) == 0 for b in blocks)
    title: str | None = None  # a Title-styled paragraph says it best, then the metadata
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            lines.extend(t for t in (_row_text(r) for r in block.rows) if t)
            continue
        text = _one_line(block.text)
        if not text:
            continue
        level = _heading_level(block)
        if level is None:
            lines.append(text)
            continue
        if level == 0 and title is None:
            title = text
        depth = min(6, 1 if level == 0 else level + has_title)
        lines.append("#" * depth + " " + text)
    return "\n".join(lines), title or stated


class DocxReader:
    name = "docx"

    def read(self, path: Path, raw: bytes, limits: Limits) -> Extracted:
        text, title = read_docx(raw, path.name)
        if not text.strip():
            raise ReadError(f"{path.name}: the document has no text")
        return Extracted(text=text, media_type=DOCX, reader=self.name, markdown=True,
                         rejoin_lines=False, title=title)
