"""OCR of scanned pages and images with rapidocr-onnxruntime (PP-OCRv4 Chinese detection and
recognition, Apache-2.0; the models ship in its wheel, nothing is downloaded).

The engine is loaded on first use, once per process, and runs one page at a time. Its boxes
are put in reading order here: boxes that share a row are one line, left to right, and the
rows go top to bottom; :mod:`qa.ingest.readers.layout` groups the lines into paragraphs.
"""

from __future__ import annotations

import statistics
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa.ingest.readers.base import Extracted, Limits, ReadError
from qa.ingest.readers.layout import Line, read_pages

if TYPE_CHECKING:
    from PIL.Image import Image

# The detector shrinks any image whose longer side is over 2000 px to 2000 px; rendering or
# keeping more pixels than that only costs time.
OCR_SIDE = 2000
# Recognitions below this confidence are mostly noise (stains, stamps, ruled lines).
MIN_SCORE = 0.5

_engine: Any = None
_lock = threading.Lock()


def _get_engine() -> Any:
    global _engine
    if _engine is None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # a core dependency, but OpenCV under it needs libGL
            raise ReadError(f"OCR is unavailable ({exc}); it needs rapidocr-onnxruntime (pip "
                            "install -e .) and, on a slim Linux image, the libraries OpenCV "
                            "loads: apt-get install libgl1 libglib2.0-0") from exc
        _engine = RapidOCR()
    return _engine


def _rows(boxes: list[tuple[float, float, float, float, str]], page: int) -> list[Line]:
    """OCR boxes (x0, top, x1, bottom, text) -> lines in reading order: a box joins the row
    whose vertical middle it overlaps, rows top to bottom, boxes left to right in a row."""
    rows: list[list[tuple[float, float, float, float, str]]] = []
    for box in sorted(boxes, key=lambda b: (b[1] + b[3]) / 2):
        mid = (box[1] + box[3]) / 2
        if rows:
            last = rows[-1]
            top = statistics.median(b[1] for b in last)
            bottom = statistics.median(b[3] for b in last)
            if top <= mid <= bottom:
                last.append(box)
                continue
        rows.append([box])
    lines = []
    for row in rows:
        row.sort(key=lambda b: b[0])
        height = statistics.median(b[3] - b[1] for b in row)
        text = row[0][4]
        for a, b in zip(row, row[1:], strict=False):
            # Boxes far apart on one row are separate cells or columns: keep a space.
            text += (" " if b[0] - a[2] > 0.6 * height else "") + b[4]
        lines.append(Line(text=text, x0=row[0][0], x1=max(b[2] for b in row),
                          top=min(b[1] for b in row), bottom=max(b[3] for b in row), page=page))
    return lines


def ocr_lines(image: Image, page: int) -> list[Line]:
    """The text lines the OCR engine finds on one page image, in reading order."""
    import numpy as np

    image = image.convert("RGB")
    longer = max(image.size)
    if longer > OCR_SIDE:
        scale = OCR_SIDE / longer
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))))
    with _lock:
        engine = _get_engine()
        # RapidOCR takes OpenCV's BGR channel order. Its text-direction classifier is off:
        # on a 12 pt A4 page at 150 dpi it turned 4 of 33 upright lines upside down, which
        # then read as nothing (score 0); pages of documents are upright, line by line.
        result, _ = engine(np.asarray(image)[:, :, ::-1], use_cls=False)
    boxes = []
    for points, text, score in result or []:
        if float(score) < MIN_SCORE or not str(text).strip():
            continue
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        boxes.append((min(xs), min(ys), max(xs), max(ys), str(text).strip()))
    return _rows(boxes, page)


class ImageReader:
    """PNG, JPEG, TIFF (every frame a page) and BMP images of text, read by OCR."""

    name = "image"

    def read(self, path: Path, raw: bytes, limits: Limits) -> Extracted:
        from io import BytesIO

        from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

        try:
            img = Image.open(BytesIO(raw))
            count = getattr(img, "n_frames", 1)
            media_type = Image.MIME.get(img.format or "", "application/octet-stream")
            if count > limits.max_pages:
                raise ReadError(f"{path.name}: {count} pages, over the limit of "
                                f"{limits.max_pages} pages per file")
            # One frame in memory at a time: a multi-page TIFF can be a whole scanned file.
            pages = [ocr_lines(ImageOps.exif_transpose(frame.copy()), number)
                     for number, frame in enumerate(ImageSequence.Iterator(img), start=1)]
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ReadError(f"{path.name}: not a readable image ({exc})") from exc
        text, starts, _ = read_pages(pages)
        if not text.strip():
            raise ReadError(f"{path.name}: OCR found no text in the image")
        # One image is one page: a page number would say nothing a citation needs.
        return Extracted(text=text, media_type=media_type, reader=self.name, markdown=True,
                         rejoin_lines=False, pages=starts if count > 1 else ())
