"""One reader per format, chosen by the file's extension and checked against its content.

Adding a format is one module with a reader (``read(path, raw, limits) -> Extracted``) and
one line in ``READERS`` and ``EXTENSIONS``. The content decides when it is sure: a ``.txt``
that is a PDF is read as a PDF, an old binary Word file named ``.docx`` goes through
LibreOffice, a ``.txt`` that is an HTML page is read as a web page (a ``.md`` stays
Markdown). Every reader's heavy library is imported inside the reader, on first use.
"""

from __future__ import annotations

import re
import zipfile
from io import BytesIO
from pathlib import Path

from qa.ingest.readers.base import READERS_VERSION, Extracted, Limits, Reader, ReadError
from qa.ingest.readers.legacy import LegacyWordReader
from qa.ingest.readers.ocr import ImageReader
from qa.ingest.readers.pdf import PdfReader
from qa.ingest.readers.text import TextReader
from qa.ingest.readers.web import HtmlReader
from qa.ingest.readers.word import DocxReader

__all__ = ["EXTENSIONS", "READERS", "READERS_VERSION", "Extracted", "Limits", "ReadError",
           "Reader", "read_file", "reader_for", "sniff"]

READERS: dict[str, Reader] = {
    "text": TextReader(markdown=None),
    "markdown": TextReader(markdown=True),
    "pdf": PdfReader(),
    "image": ImageReader(),
    "docx": DocxReader(),
    "doc": LegacyWordReader(),
    "html": HtmlReader(),
}

EXTENSIONS: dict[str, str] = {
    ".txt": "text", ".md": "markdown", ".markdown": "markdown",
    ".pdf": "pdf",
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image",
    ".bmp": "image",
    ".docx": "docx", ".doc": "doc", ".wps": "doc",
    ".html": "html", ".htm": "html",
}

# Formats whose signature is certain enough to overrule the extension.
_BINARY = ("pdf", "docx", "doc", "image")
_HTML = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html)[\s>]",
                   re.IGNORECASE | re.DOTALL)
_NAMES = {"pdf": "a PDF", "docx": "a Word document (.docx)", "image": "an image",
          "doc": "a legacy Word/WPS document", "html": "a web page"}


def sniff(raw: bytes) -> str | None:
    """The format the bytes themselves declare, or None for no known signature."""
    head = raw[:16]
    if b"%PDF-" in raw[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(BytesIO(raw)) as z:
                return "docx" if "word/document.xml" in z.namelist() else None
        except zipfile.BadZipFile:
            return None
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") or head.startswith(b"{\\rtf"):
        return "doc"  # OLE compound file (Word 97-2003, WPS) or RTF: LibreOffice reads both
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")):
        return "image"
    if head.startswith(b"BM") and len(raw) >= 26 and \
            int.from_bytes(raw[2:6], "little") == len(raw):
        return "image"
    if _HTML.match(raw[:4096].lstrip(b"\xef\xbb\xbf")):
        return "html"
    return None


def reader_for(path: Path, raw: bytes) -> tuple[str, str | None]:
    """(format, a warning when the content overrules the extension); ReadError for a file
    qa has no reader for, or whose content is not what its extension says."""
    ext = path.suffix.lower()
    claimed = EXTENSIONS.get(ext)
    if claimed is None:
        known = " ".join(sorted(EXTENSIONS))
        raise ReadError(f"{path.name}: unsupported file type {ext or '(no extension)'}; "
                        f"qa reads {known}")
    found = sniff(raw)
    if found in _BINARY and found != claimed and not (claimed == "doc" and found == "docx"):
        return found, f"{path.name}: the content is {_NAMES[found]}, read as such"
    if found == "docx" and claimed == "doc":
        return "docx", None  # a .doc saved as Office Open XML: no LibreOffice needed
    if claimed in ("pdf", "docx", "image") and found != claimed:
        raise ReadError(f"{path.name}: not {_NAMES[claimed]} (its content does not start like "
                        f"one); renamed, truncated or damaged?")
    if claimed == "text" and found == "html":
        return "html", f"{path.name}: the content is a web page, read as such"
    return claimed, None


def read_file(path: Path, raw: bytes, limits: Limits | None = None) -> Extracted:
    """Read one file's bytes with the reader its extension and content call for."""
    fmt, warning = reader_for(path, raw)
    extracted = READERS[fmt].read(path, raw, limits or Limits())
    if warning:
        from dataclasses import replace

        extracted = replace(extracted, warnings=(warning, *extracted.warnings))
    return extracted
