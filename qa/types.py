"""Small frozen records shared by every layer. API schemas live in ``qa.service.schemas``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """A source file of the corpus and its metadata.

    ``text`` is the file decoded as UTF-8, unchanged: every chunk's offsets index into it.
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
                    date: str | None) -> str:
    """``《title》第12段 · 孟武康(市发展和改革委员会主任) · 2021-07-26``."""
    parts = [f"《{title}》第{paragraph}段"]
    if speaker:
        parts.append(f"{speaker}({role})" if role else speaker)
    if date:
        parts.append(date)
    return " · ".join(parts)
