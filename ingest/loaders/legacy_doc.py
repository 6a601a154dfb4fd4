"""Legacy Word (.doc, OLE2) files, converted to .docx by LibreOffice, then read by the DOCX loader.

Government and legal archives are full of .doc files. docqa does not parse the binary format itself:
where LibreOffice is installed (Debian: ``apt-get install libreoffice-writer-nogui``) each file is
converted headless, in a private temporary folder with its own LibreOffice profile (so conversions
never share state or lock each other), within ``DOC_CONVERT_TIMEOUT_S``; the converted text, tables and
headings then go through ``load_docx``. The document keeps the .doc's path as its source and the hash
of the .doc's bytes as its content hash (a conversion is not byte-for-byte repeatable), so an
unchanged .doc is skipped on the next ingest like any file. Without LibreOffice the file is reported
with what to do, and the rest of the batch is ingested.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from docqa.document import Document, sha256_hex
from ingest.loaders.errors import LoadError
from ingest.loaders.limits import DEFAULT_LIMITS, Limits

DOC_CONVERT_TIMEOUT_S = 120
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
NO_LIBREOFFICE = ("legacy .doc needs LibreOffice to be converted, and it is not installed: install it (Debian: "
                  "apt-get install libreoffice-writer-nogui) or save the file as .docx")


def soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def load_doc(path: Path, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Document:
    if not data.startswith(OLE_MAGIC):
        raise LoadError(str(path), "not a legacy Word (.doc) file: it does not start with the OLE2 signature")
    exe = soffice()
    if exe is None:
        raise LoadError(str(path), NO_LIBREOFFICE)
    from ingest.loaders.docx import load_docx

    with tempfile.TemporaryDirectory(prefix="docqa-doc-") as tmp:
        src = Path(tmp) / "in.doc"  # the bytes already read: no trouble with odd names or a changed file
        src.write_bytes(data)
        converted = convert(exe, src, Path(tmp), path, "docx")
        doc = load_docx(path, converted, limits)
    doc.content_hash = sha256_hex(data)
    doc.meta["format"] = "doc"
    return doc


def convert(exe: str, src: Path, tmp: Path, path: Path, to: str = "docx") -> bytes:
    """``src`` converted by LibreOffice to format ``to`` ("docx", "pdf"), headless in ``tmp`` with its
    own profile, within ``DOC_CONVERT_TIMEOUT_S``; LoadError naming ``path`` when it fails."""
    out = tmp / "out"
    profile = (tmp / "profile").as_uri()
    cmd = [exe, "--headless", "--norestore", "--nolockcheck", "--nodefault", "--nologo",
           f"-env:UserInstallation={profile}", "--convert-to", to, "--outdir", str(out), str(src)]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                env={**os.environ, "HOME": str(tmp)})
    except OSError as e:
        raise LoadError(str(path), f"LibreOffice could not be started ({e.strerror or e})") from None
    try:
        _, err = proc.communicate(timeout=DOC_CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # soffice starts helper processes: end the whole group
        proc.communicate()
        raise LoadError(str(path), f"LibreOffice did not convert it within {DOC_CONVERT_TIMEOUT_S} s") from None
    result = out / f"{src.stem}.{to}"
    if proc.returncode != 0 or not result.is_file():
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise LoadError(str(path), f"LibreOffice could not convert it ({why[0][:200]}); the file may be damaged "
                                   "or protected")
    return result.read_bytes()
