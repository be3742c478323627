"""Rebuild the shipped reader fixtures with LibreOffice: tests/data/readers/transport.pdf (a
text PDF with a running header, page numbers and a paragraph over a page break) and
tests/data/readers/rural.doc (a legacy Word file) and tests/data/readers/encrypted.pdf (a password-protected PDF).

    python scripts/make_reader_fixtures.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.doc_fixtures import (  # noqa: E402
    DATA,
    DOC_FILE,
    DOC_PARAS,
    DOC_TITLE,
    ENCRYPTED_FILE,
    PDF_FILE,
    PDF_HEADER,
    PDF_PARAS,
    PDF_TITLE,
    make_office_source,
)

ENCRYPT = ('pdf:writer_pdf_Export:{"EncryptFile":{"type":"boolean","value":"true"},'
           '"DocumentOpenPassword":{"type":"string","value":"secret"}}')


def convert(src: Path, fmt: str, dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp}/profile",
                        "--convert-to", fmt, "--outdir", tmp, str(src)], check=True,
                       capture_output=True, timeout=120)
        shutil.move(Path(tmp) / f"{src.stem}.{fmt.split(':')[0]}", dest)


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pdf_src = make_office_source(Path(tmp) / "transport.docx", PDF_TITLE, PDF_PARAS,
                                     PDF_HEADER)
        convert(pdf_src, "pdf", PDF_FILE)
        doc_src = make_office_source(Path(tmp) / "rural.docx", DOC_TITLE, DOC_PARAS)
        convert(doc_src, "doc", DOC_FILE)
        convert(doc_src, ENCRYPT, ENCRYPTED_FILE)
    for f in (PDF_FILE, DOC_FILE, ENCRYPTED_FILE):
        print(f.relative_to(ROOT), f.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
