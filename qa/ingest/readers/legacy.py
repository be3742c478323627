"""Legacy Word (.doc) and WPS (.wps) files, converted to .docx by LibreOffice.

No maintained Python library reads the old binary formats; LibreOffice does, headless. Each
conversion gets a private, throw-away LibreOffice profile (a shared one makes concurrent or
crashed conversions block each other) and a time limit, after which the whole process
group is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from qa.ingest.readers.base import Extracted, Limits, ReadError
from qa.ingest.readers.word import read_docx

INSTALL = "apt-get install libreoffice-writer-nogui"
MEDIA_TYPES = {".doc": "application/msword", ".wps": "application/vnd.ms-works",
               ".rtf": "application/rtf"}


def soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def convert_to_docx(raw: bytes, name: str, suffix: str, timeout_s: float) -> bytes:
    """The .docx LibreOffice makes of ``raw``, or ReadError saying why there is none."""
    exe = soffice()
    if exe is None:
        raise ReadError(f"{name}: a legacy Word/WPS file can only be read with LibreOffice, "
                        f"which is not installed; install it ({INSTALL}) and run qa index "
                        "again, or save the file as .docx")
    with tempfile.TemporaryDirectory(prefix="qa-soffice-") as tmp:
        work = Path(tmp)
        # A plain ASCII name: LibreOffice derives the output name from it.
        src = work / f"input{suffix}"
        src.write_bytes(raw)
        cmd = [exe, "--headless", "--norestore", "--nolockcheck", "--nodefault",
               f"-env:UserInstallation={(work / 'profile').as_uri()}",
               "--convert-to", "docx", "--outdir", str(work / "out"), str(src)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "HOME": tmp})
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ReadError(f"{name}: LibreOffice did not convert it within {timeout_s:.0f} s "
                            "(damaged, or very large?)") from None
        out = work / "out" / "input.docx"
        if not out.exists():
            said = output.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise ReadError(f"{name}: LibreOffice could not convert it (password-protected or "
                            f"damaged?): {said[0]}")
        return out.read_bytes()


class LegacyWordReader:
    name = "doc"

    def read(self, path: Path, raw: bytes, limits: Limits) -> Extracted:
        suffix = path.suffix.lower() if path.suffix.lower() in MEDIA_TYPES else ".doc"
        converted = convert_to_docx(raw, path.name, suffix, limits.convert_timeout_s)
        text, title = read_docx(converted, path.name)
        if not text.strip():
            raise ReadError(f"{path.name}: the document has no text")
        return Extracted(text=text, media_type=MEDIA_TYPES[suffix], reader=self.name,
                         markdown=True, rejoin_lines=False, title=title)
