"""From positioned lines (a PDF's text layer, or OCR boxes) to paragraphs and page offsets.

A page lays a paragraph out over many lines and a paragraph may run on over a page break;
a careful reader joins them back. A line starts a new paragraph when it is indented (the
two-character first-line indent of Chinese documents), when the line before stopped short
of the right margin, after a wider gap than the page's usual line spacing, when the font
size changes (a heading), or when it begins with an item marker (一、 （二） 3. 第五条).
Running headers and footers (a line repeated at the edge of most pages) and page numbers
(3, - 3 -, 第3页, 3/10) are dropped.

The output is the document's text, one paragraph per line, and the offset where each page
starts; a paragraph that runs over a page break is cited at the page where it starts.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from qa.ingest.chunking import is_terminal


@dataclass
class Line:
    """One line of a page, in page coordinates with y growing downwards."""

    text: str
    x0: float
    x1: float
    top: float
    bottom: float
    page: int  # 1-based

    @property
    def height(self) -> float:
        return max(1e-3, self.bottom - self.top)


_PAGE_NUMBER = re.compile(
    r"^(?:[-—–－_·•~\s]*\d{1,4}[-—–－_·•~\s]*"
    r"|第\s*\d{1,4}\s*页(?:\s*[/,，、]?\s*共\s*\d{1,4}\s*页)?"
    r"|\d{1,4}\s*/\s*\d{1,4}|共\s*\d{1,4}\s*页\s*第\s*\d{1,4}\s*页"
    r"|(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?)$",
    re.IGNORECASE,
)
_ITEM = re.compile(r"^(?:[一二三四五六七八九十]{1,3}[、.．]|[（(][一二三四五六七八九十\d]{1,3}[)）]"
                   r"|\d{1,2}[、.．](?!\d)|第[一二三四五六七八九十百零\d]{1,5}[条章节部分])")
# The first and last lines of a page where running headers, footers and numbers sit.
_EDGE = 2
_HEAD = 40


def _key(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", text))


def drop_furniture(pages: list[list[Line]]) -> tuple[list[list[Line]], int]:
    """The pages without running headers/footers and page numbers, and how many lines went."""
    with_text = [p for p in pages if p]
    # A short page's edge is its first and last line only: most of it is body.
    edges = [p[:_EDGE] + p[-_EDGE:] if len(p) > 2 * _EDGE else p[:1] + p[-1:] for p in pages]
    seen: dict[str, set[int]] = {}
    for number, edge in enumerate(edges):
        for ln in edge:
            seen.setdefault(_key(ln.text), set()).add(number)
    need = max(2, (len(with_text) + 1) // 2)
    # Running heads are short; a long line seen twice is content (a repeated table head).
    running = {k for k, where in seen.items() if len(where) >= need and 0 < len(k) <= _HEAD}
    out: list[list[Line]] = []
    dropped = 0
    for page, edge in zip(pages, edges, strict=True):
        edge_ids = {id(ln) for ln in edge}
        kept = [ln for ln in page if id(ln) not in edge_ids
                or not (_PAGE_NUMBER.match(ln.text.strip()) or _key(ln.text) in running)]
        dropped += len(page) - len(kept)
        out.append(kept)
    return out, dropped


@dataclass
class _PageShape:
    left: float
    right: float
    height: float
    gap: float


def _shape(lines: list[Line], fallback: float) -> _PageShape:
    height = statistics.median(ln.height for ln in lines) if lines else fallback
    if len(lines) < 3:
        # Too few lines to tell the margins: nothing counts as indented or short.
        return _PageShape(min((ln.x0 for ln in lines), default=0.0),
                          max((ln.x1 for ln in lines), default=0.0), height, height)
    x0s = sorted(ln.x0 for ln in lines)
    x1s = sorted(ln.x1 for ln in lines)
    gaps = [b.top - a.bottom for a, b in zip(lines, lines[1:], strict=False) if b.top > a.top]
    return _PageShape(left=x0s[len(x0s) // 5], right=x1s[(len(x1s) * 9) // 10],
                      height=height, gap=statistics.median(gaps) if gaps else height * 0.5)


def _indented(ln: Line, s: _PageShape) -> bool:
    return ln.x0 > s.left + 0.8 * s.height


def _short(ln: Line, s: _PageShape) -> bool:
    return ln.x1 < s.right - 1.5 * s.height


def _font_change(a: Line, b: Line) -> bool:
    return abs(a.height - b.height) > 0.3 * max(a.height, b.height)


def paragraphs(pages: list[list[Line]]) -> list[list[Line]]:
    """Group the lines of all pages, in order, into paragraphs."""
    all_lines = [ln for p in pages for ln in p]
    if not all_lines:
        return []
    fallback = statistics.median(ln.height for ln in all_lines)
    shapes = [_shape(p, fallback) for p in pages]
    # Does this document mark paragraphs by indenting their first line? Then an unindented
    # line at the top of a page continues the paragraph, even after a full stop.
    after_short = [_indented(b, s) for p, s in zip(pages, shapes, strict=True)
                   for a, b in zip(p, p[1:], strict=False) if _short(a, s) and not _ITEM.match(b.text)]
    indent_style = len(after_short) >= 2 and sum(after_short) * 2 >= len(after_short)
    out: list[list[Line]] = []
    prev: Line | None = None
    prev_shape: _PageShape | None = None
    for page, s in zip(pages, shapes, strict=True):
        for i, ln in enumerate(page):
            if prev is None or prev_shape is None:
                new = True
            elif i > 0:
                new = (ln.top - prev.bottom > s.gap + 0.6 * s.height or _indented(ln, s)
                       or _short(prev, s) or _font_change(prev, ln) or bool(_ITEM.match(ln.text)))
            else:
                new = (_short(prev, prev_shape) or _indented(ln, s) or _font_change(prev, ln)
                       or bool(_ITEM.match(ln.text))
                       or (not indent_style and is_terminal(prev.text)))
            if new:
                out.append([ln])
            else:
                out[-1].append(ln)
            prev, prev_shape = ln, s
    return out


def join(a: str, b: str) -> str:
    """What goes between two lines of one paragraph: nothing after CJK, a space between
    Latin words."""
    return " " if a[-1:].isascii() and a[-1:] not in "-/" and b[:1].isascii() else ""


_HEADING_MARK = re.compile(r"^(?:第[一二三四五六七八九十百零\d]{1,5}[章节编部分]"
                           r"|[一二三四五六七八九十]{1,3}、|[（(][一二三四五六七八九十]{1,3}[)）])")
_NOT_HEADING_END = "。！？!?；;：:，,、"
_MAX_HEADING = 40


def heading_levels(paras: list[list[Line]]) -> list[int]:
    """A Markdown level for each paragraph that reads as a heading, 0 for body text.

    A heading is one short line without closing punctuation, set larger than the body text
    (levels by size, largest first) or opening with a section mark at body size (一、 then
    （一）, below the sized ones). Nothing else: a short body line mistaken for a heading
    would leave the passages, so the signal must be positive."""
    lines = [ln for p in paras for ln in p]
    if not lines:
        return []
    body = statistics.median(ln.height for ln in lines)

    def candidate(p: list[Line]) -> bool:
        text = p[0].text.strip()
        return len(p) == 1 and 0 < len(text) <= _MAX_HEADING and text[-1] not in _NOT_HEADING_END

    sizes = sorted({round(p[0].height / body, 1) for p in paras
                    if candidate(p) and p[0].height >= 1.2 * body}, reverse=True)[:4]
    levels = []
    for p in paras:
        level = 0
        if candidate(p):
            rel = round(p[0].height / body, 1)
            mark = _HEADING_MARK.match(p[0].text.strip())
            if rel in sizes:
                level = sizes.index(rel) + 1
            elif mark and p[0].height < 1.2 * body:
                level = len(sizes) + (2 if mark.group(0).startswith(("（", "(")) else 1)
        levels.append(level)
    return levels


def assemble(paras: list[list[Line]], page_count: int) -> tuple[str, tuple[int, ...]]:
    """The text, one paragraph per line with headings as Markdown ``#`` lines, and the offset
    where each page's text starts (a page without text starts where the next one does)."""
    parts: list[str] = []
    pos = 0
    starts: dict[int, int] = {}
    for para, level in zip(paras, heading_levels(paras), strict=True):
        if parts:
            parts.append("\n")
            pos += 1
        if level:
            starts.setdefault(para[0].page, pos)
            parts.append("#" * level + " ")
            pos += level + 1
        prev = ""
        for ln in para:
            text = ln.text.strip()
            if prev:
                sep = join(prev, text)
                parts.append(sep)
                pos += len(sep)
            starts.setdefault(ln.page, pos)
            parts.append(text)
            pos += len(text)
            prev = text
    pages = [0] * page_count
    nxt = pos
    for number in range(page_count, 0, -1):
        nxt = starts.get(number, nxt)
        pages[number - 1] = nxt
    if pages:
        pages[0] = 0
    return "".join(parts), tuple(pages)


def read_pages(pages: list[list[Line]]) -> tuple[str, tuple[int, ...], int]:
    """Positioned lines of each page -> (text, page starts, furniture lines dropped)."""
    kept, dropped = drop_furniture([[ln for ln in p if ln.text.strip()] for p in pages])
    text, starts = assemble(paragraphs(kept), len(pages))
    return text, starts, dropped
