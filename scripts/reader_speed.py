"""Pages per minute of the PDF reader, for text PDFs and for scanned pages (OCR).

Makes an A4 text PDF of Chinese body text with LibreOffice (12 pt, a running header and page
numbers), and a scanned copy of its first pages (each page rendered to a 150 dpi image and
wrapped in an image-only PDF, as a scanner makes them); reads both with the PDF reader and
prints pages per minute, and how close the OCR text is to the text layer.

    python scripts/reader_speed.py --pages 40 --scanned-pages 6
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa.ingest.readers import Limits, read_file  # noqa: E402
from scripts.make_reader_fixtures import convert  # noqa: E402
from tests.doc_fixtures import make_office_source  # noqa: E402

SENTENCES = [
    "坚持以人民为中心的发展思想，统筹城市规划建设管理，推动城市结构调整优化和品质提升。",
    "到2025年，全市完成老旧小区改造800个，惠及居民30万户，同步推进加装电梯和无障碍设施建设。",
    "优化线网布局，推进轨道交通与常规公交两网融合，加密社区微循环线路，提升换乘便捷程度。",
    "企业开办时间压缩至1个工作日以内，工程建设项目审批时间控制在60个工作日以内。",
    "每个街道至少建成1个综合养老服务中心，社区养老服务设施覆盖率达到100%。",
]


def body(pages: int) -> list[tuple[str, str]]:
    """About ``pages`` A4 pages of 12 pt Chinese paragraphs (~15 paragraphs a page)."""
    paras = []
    for i in range(pages * 15):
        text = "".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(2))
        paras.append(("h1", f"第{i // 15 + 1}部分") if i % 15 == 0 else ("p", text))
    return paras


def scan(pdf: Path, dest: Path, pages: int) -> None:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    images = [doc[i].render(scale=150 / 72).to_pil().convert("L")
              for i in range(min(pages, len(doc)))]
    doc.close()
    images[0].save(dest, save_all=True, append_images=images[1:], resolution=150)


CPU: list[float] = []


def timed(path: Path) -> tuple[float, int, str]:
    """Wall seconds, pages and text of one read; its CPU seconds (all threads) go to CPU."""
    started, cpu = time.perf_counter(), time.process_time()
    ex = read_file(path, path.read_bytes(), Limits(max_pages=10_000))
    CPU.append(time.process_time() - cpu)
    return time.perf_counter() - started, len(ex.pages), ex.text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=40)
    ap.add_argument("--scanned-pages", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = make_office_source(Path(tmp) / "speed.docx", "速度测试", body(args.pages),
                                 "某某市人民政府办公厅")
        text_pdf = Path(tmp) / "text.pdf"
        convert(src, "pdf", text_pdf)
        scanned = Path(tmp) / "scanned.pdf"
        scan(text_pdf, scanned, args.scanned_pages)
        seconds, pages, _ = timed(text_pdf)
        print(f"text PDF: {pages} pages in {seconds:.2f} s = {pages / seconds * 60:.0f} pages/min"
              f" (CPU {CPU[-1] / pages * 1000:.0f} ms a page)")
        read_file(Path("warm.png"), _png(text_pdf), Limits())  # loads the OCR engine, untimed
        seconds, pages, ocr_text = timed(scanned)
        print(f"scanned PDF (OCR, 150 dpi): {pages} pages in {seconds:.1f} s = "
              f"{pages / seconds * 60:.1f} pages/min (CPU {CPU[-1] / pages:.1f} s a page, "
              "all threads)")
        _, _, layer_text = timed(_first_pages(text_pdf, pages, Path(tmp) / "first.pdf"))
        # Whitespace aside: LibreOffice's text layer spaces digits from CJK ("2025 年").
        ocr, layer = ("".join(t.split()) for t in (ocr_text, layer_text))
        ratio = difflib.SequenceMatcher(None, ocr, layer, autojunk=False).ratio()
        print(f"OCR text vs the text layer of the same pages: similarity {ratio:.3f} "
              f"({len(ocr)} vs {len(layer)} characters)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def _png(pdf: Path) -> bytes:
    import io

    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    buf = io.BytesIO()
    doc[0].render(scale=0.5).to_pil().save(buf, format="PNG")
    doc.close()
    return buf.getvalue()


def _first_pages(pdf: Path, pages: int, dest: Path) -> Path:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    out = pdfium.PdfDocument.new()
    out.import_pages(doc, list(range(pages)))
    out.save(dest)
    doc.close()
    out.close()
    return dest


if __name__ == "__main__":
    main()
