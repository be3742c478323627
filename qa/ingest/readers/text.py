"""Plain text and Markdown in any common Chinese encoding.

UTF-8 is tried first and strictly (almost every file, and it cannot be mistaken for anything
else); a byte-order mark decides UTF-8/16/32 and is dropped, so it never reaches a title or
an offset; anything else goes to charset-normalizer, whose guess between GB18030 and Big5 is
checked against which one reads as common characters (two-byte Chinese text often decodes in
both). Bytes that decode to control or unassigned characters are refused: they are binary
data, whatever an encoding makes of them.
"""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path

from qa.ingest.readers.base import Extracted, Limits, ReadError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_CJK_PAIR = ("gb18030", "big5", "big5hkscs")
# What charset-normalizer may choose from: the encodings Chinese documents come in, and the
# Western ones an English file may be in. A wider choice only adds wrong guests (EBCDIC for
# a few random bytes, cp1250 for French).
DETECTED = ("utf_16_le", "utf_16_be", "utf_32_le", "utf_32_be", "gb18030", "big5",
            "big5hkscs", "cp1252")
# Above this share of control, private-use or unassigned characters the bytes are not text.
MAX_JUNK = 0.02
_NAMES = {"utf_8": "UTF-8", "utf-8-sig": "UTF-8 (BOM)", "utf-16": "UTF-16", "utf-32": "UTF-32",
          "gb18030": "GB18030", "gbk": "GBK", "gb2312": "GB2312", "big5": "Big5",
          "big5hkscs": "Big5-HKSCS", "utf_16_le": "UTF-16LE", "utf_16_be": "UTF-16BE"}


def _junk_share(text: str) -> float:
    text = text[:200_000]  # a sample is enough, and a 100 MB file stays quick
    bad = sum(1 for ch in text
              if ch not in "\t\n\r\f" and unicodedata.category(ch) in ("Cc", "Co", "Cn", "Cs")
              or ch == "\ufffd")
    return bad / max(1, len(text))


def _common_share(text: str, encoding: str) -> float:
    """Share of the CJK characters that are in the frequently used block of ``encoding``
    (GB2312 level 1, rows 0xB0-0xD7; Big5 0xA440-0xC67E): the right reading of Chinese text
    is mostly common characters, the wrong one mostly rare ones."""
    cjk = [ch for ch in text if "\u4e00" <= ch <= "\u9fff"]
    if not cjk:
        return 0.0
    common = 0
    for ch in cjk:
        try:
            b = ch.encode("gb2312" if encoding == "gb18030" else "big5")
        except UnicodeEncodeError:
            continue
        if encoding == "gb18030" and 0xB0 <= b[0] <= 0xD7 or \
                encoding != "gb18030" and 0xA440 <= int.from_bytes(b[:2], "big") <= 0xC67E:
            common += 1
    return common / len(cjk)


def _strict(raw: bytes, encoding: str) -> str | None:
    try:
        return raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def decode(raw: bytes, name: str) -> tuple[str, str, list[str]]:
    """(text, encoding, warnings), or ReadError saying why the bytes are not text."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            text = _strict(raw, encoding)
            if text is None:
                raise ReadError(f"{name}: starts with a {_NAMES[encoding]} byte-order mark but "
                                f"is not valid {_NAMES[encoding]}; save it again as UTF-8")
            return text.lstrip("\ufeff"), encoding, []
    text = _strict(raw, "utf-8")
    if text is not None:
        # Random bytes can be valid UTF-8 ('"\x10A\x01' is); control codes give them away.
        junk = _junk_share(text)
        if junk > MAX_JUNK:
            raise ReadError(f"{name}: does not look like text: valid UTF-8, but {junk:.0%} of "
                            "the characters are control codes (binary data?)")
        return text, "utf-8", []
    from charset_normalizer import from_bytes

    best = from_bytes(raw, cp_isolation=list(DETECTED)).best()
    if best is None:
        raise ReadError(f"{name}: not text in any encoding qa recognises (UTF-8, UTF-16, "
                        "GB18030/GBK, Big5); if it is text, save it as UTF-8")
    encoding = best.encoding
    text = str(best)
    if encoding in ("gbk", "gb2312", "big5", "big5hkscs", "gb18030", "cp950", "cp936"):
        candidates = {e: t for e in _CJK_PAIR if (t := _strict(raw, e)) is not None}
        if candidates:
            encoding = max(candidates, key=lambda e: (_common_share(candidates[e], e),
                                                      e == encoding))
            text = candidates[encoding]
    shown = _NAMES.get(encoding, encoding)
    junk = _junk_share(text)
    if junk > MAX_JUNK:
        raise ReadError(f"{name}: does not look like text: decoded as {shown}, {junk:.0%} of "
                        "the characters are control or unassigned codes (binary data?)")
    if not _plausible(text):
        raise ReadError(f"{name}: does not look like text: decoded as {shown} it is mostly "
                        "rare characters outside Chinese and Latin writing (binary data, or an "
                        "encoding qa does not recognise); if it is text, save it as UTF-8")
    warnings = [f"{name}: not UTF-8; read as {shown} (detected)"]
    return text.lstrip("\ufeff"), encoding, warnings


def _usual(ch: str) -> bool:
    o = ord(ch)
    return (o < 0x180 or 0x2000 <= o <= 0x206F or 0x3000 <= o <= 0x30FF
            or 0x4E00 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xFF00 <= o <= 0xFFEF)


def _plausible(text: str) -> bool:
    """A guessed decoding reads as text: mostly characters of the usual scripts, and the
    Chinese characters mostly common ones. Random bytes that happen to decode (as UTF-16,
    say) come out as a spread of scripts and rare characters."""
    sample = text[:20000]
    if sum(map(_usual, sample)) < 0.9 * len(sample):
        return False
    cjk = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
    if not cjk:
        return True
    return max(_common_share(sample, "gb18030"), _common_share(sample, "big5")) >= 0.5


class TextReader:
    """``.txt`` (the chunker decides from the text whether it is Markdown) and ``.md``."""

    def __init__(self, markdown: bool | None) -> None:
        self.markdown = markdown
        self.name = "markdown" if markdown else "text"

    def read(self, path: Path, raw: bytes, limits: Limits) -> Extracted:
        text, encoding, warnings = decode(raw, path.name)
        if not text.strip():
            raise ReadError(f"{path.name}: the file is empty")
        kind = "text/markdown" if self.markdown else "text/plain"
        charset = "utf-8" if encoding.startswith("utf-8") else encoding.replace("_", "-")
        return Extracted(text=text, media_type=f"{kind}; charset={charset}", reader=self.name,
                         markdown=self.markdown, warnings=tuple(warnings))
