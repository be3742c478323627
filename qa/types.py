"""Small frozen records shared by every layer. API schemas live in ``qa.service.schemas``."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """A source file of the corpus and its metadata.

    ``text`` is the text the file was read as (a text file decoded, BOM dropped; the
    paragraphs of a PDF, Word file or web page, one per line): every chunk's offsets index
    into it, and ``GET /documents/{doc_id}/text`` serves it. ``pages`` holds the offset in
    ``text`` where each page starts (empty where the source has no pages); ``markdown`` and
    ``rejoin_lines`` tell the chunker how the reader laid the text out.
    """

    doc_id: str
    path: str
    title: str
    text: str
    sha256: str
    date: str | None = None
    source: str | None = None
    doc_type: str | None = None
    language: str = "zh"
    extra: dict[str, str] = field(default_factory=dict)
    media_type: str = "text/plain"
    pages: tuple[int, ...] = ()
    markdown: bool | None = None
    rejoin_lines: bool = True
    warnings: tuple[str, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The 1-based page that holds ``offset``, or None for a source without pages.
        A page with no text shares its start with the next one and is never returned."""
        if not self.pages:
            return None
        return max(1, bisect_right(self.pages, offset))


@dataclass(frozen=True)
class Chunk:
    """One indexed passage: a paragraph, or one window of a long paragraph.

    ``text == document.text[char_start:char_end]`` always holds; ``clean_text`` is the
    same passage with the line breaks of re-joined lines removed, for embedding and display.
    """

    chunk_id: str
    doc_id: str
    paragraph: int
    window: int
    char_start: int
    char_end: int
    text: str
    clean_text: str
    section: tuple[str, ...] = ()
    speaker: str | None = None
    speaker_role: str | None = None
    context: str | None = None
    page: int | None = None  # 1-based page of char_start, where the source has pages


@dataclass(frozen=True)
class Hit:
    """A ranked search result: a chunk, its document's citation fields and its score."""

    rank: int
    score: float
    chunk: Chunk
    title: str
    date: str | None
    citation: str
    scores: dict[str, float] = field(default_factory=dict)


def format_citation(title: str, paragraph: int, speaker: str | None, role: str | None,
                    date: str | None, page: int | None = None) -> str:
    """``《title》第12段 · 孟武康(市发展和改革委员会主任) · 2021-07-26``; with a page,
    ``《title》第3页 第12段 · 2021-07-26``."""
    where = f"第{page}页 第{paragraph}段" if page else f"第{paragraph}段"
    parts = [f"《{title}》{where}"]
    if speaker:
        parts.append(f"{speaker}({role})" if role else speaker)
    if date:
        parts.append(date)
    return " · ".join(parts)
