"""Web pages (.html, .htm) with trafilatura's main-content extraction.

Navigation, headers and footers, comment sections, scripts and styles are dropped; the
article comes out as Markdown (``#`` headings become the ``section`` breadcrumb), one
paragraph per line. Tables become one line per row, cells joined by " | ". The title and
the publication date come from the page's metadata when it has them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from qa.ingest.readers.base import Extracted, Limits, ReadError

_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")
_TABLE_ROW = re.compile(r"^\|(.*)\|$")


def _lines(markdown: str) -> list[str]:
    """trafilatura's Markdown as one paragraph per line: table rules dropped, rows as cells
    joined by " | ", blank lines gone."""
    out = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line or _TABLE_RULE.match(line):
            continue
        row = _TABLE_ROW.match(line)
        if row:
            cells = [c.strip() for c in row.group(1).split("|")]
            line = " | ".join(c for c in cells if c)
            if not line:
                continue
        out.append(line)
    return out


class HtmlReader:
    name = "html"

    def read(self, path: Path, raw: bytes, limits: Limits) -> Extracted:
        import trafilatura

        options: dict[str, Any] = {"output_format": "markdown", "include_comments": False,
                   "include_tables": True, "include_images": False, "include_links": False,
                   "deduplicate": False}
        try:
            text = trafilatura.extract(raw, **options)
            if not text:
                # A short page (a notice of a few lines) can fall under the precision
                # threshold; ask for recall before giving up.
                text = trafilatura.extract(raw, favor_recall=True, **options)
            meta = trafilatura.extract_metadata(raw)
        except (ValueError, TypeError) as exc:
            raise ReadError(f"{path.name}: not a readable web page ({exc})") from exc
        lines = _lines(text or "")
        if not lines:
            raise ReadError(f"{path.name}: no main text found in the web page")
        title = (meta.title or "").strip() or None if meta is not None else None
        date = meta.date if meta is not None and meta.date else None
        return Extracted(text="\n".join(lines), media_type="text/html", reader=self.name,
                         markdown=True, rejoin_lines=False, title=title, date=date)
