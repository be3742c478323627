"""What every reader returns, and the limits it reads under.

A reader turns the bytes of one file into an :class:`Extracted` record: the text the
document is read as (every citation offset indexes into it), laid out for the chunker, with
the offset where each page starts. Readers raise :class:`ReadError` with a message a user
can act on; the corpus loader names the file and moves on to the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from qa.errors import CorpusError

# Bumped whenever a reader's output changes, so that an index rebuilt by a newer qa reads
# every file again instead of reusing the text an older reader cached.
READERS_VERSION = "1"


class ReadError(CorpusError):
    """A file that cannot be read; the message says why and, where it can, what to do."""


@dataclass(frozen=True)
class Limits:
    """Per-file limits: a file above them is skipped with the reason."""

    max_bytes: int = 100 * 1024 * 1024
    max_pages: int = 1000
    # LibreOffice converting one legacy .doc/.wps file.
    convert_timeout_s: float = 120.0


@dataclass(frozen=True)
class Extracted:
    """One file as read.

    ``markdown``: ``#`` lines are headings (None lets the chunker decide from the text, as
    for a plain ``.txt``). ``rejoin_lines``: False when the reader already put each paragraph
    on a line of its own, so the chunker must not join lines it finds unfinished.
    ``title`` and ``date`` come from the file's own metadata (a web page's publication date),
    when it states them; a file's creation date is not used: it is mostly the date a tool
    converted or templated the file, not the date of the document.
    """

    text: str
    media_type: str
    reader: str
    markdown: bool | None = None
    rejoin_lines: bool = True
    pages: tuple[int, ...] = ()
    title: str | None = None
    date: str | None = None
    warnings: tuple[str, ...] = field(default=())


_PLACEHOLDER_TITLES = {"", "untitled", "document", "word document", "title", "无标题", "文档",
                       "新建 microsoft word 文档", "新建文档"}


def metadata_title(value: str | None, stem: str = "") -> str | None:
    """A title from a file's metadata, unless it is a tool's placeholder or a file name
    ("Word Document", "Microsoft Word - 通知.doc", the file's own name, which is what Pillow
    writes): those are worse than the first line."""
    title = re.sub(r"^Microsoft (Word|PowerPoint) - ", "", (value or "").strip())
    if title.lower() in _PLACEHOLDER_TITLES or title == stem or re.search(r"\.(docx?|wps|pdf|txt|rtf)$", title,
                                                           re.IGNORECASE):
        return None
    return title


class Reader(Protocol):
    """One format. ``read`` gets the file's bytes (already read and size-checked) and its
    path (for the name in messages, and for converters that need a file on disk)."""

    name: str

    def read(self, path: Path, raw: bytes, limits: Limits) -> Extracted: ...
