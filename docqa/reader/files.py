"""Where the reader's files are: the shipped trained layers beside this module, the build under
``models_dir()/docqa-reader`` (see build.py), and the checksum rule both sides use."""

from __future__ import annotations

import hashlib
from pathlib import Path

SHIPPED = Path(__file__).with_name("reader.safetensors")
CHECKSUM = Path(__file__).with_name("reader.sha256")
RECORD = "docqa_reader.json"
ONNX = "reader_int8.onnx"


def BUILD_DIR() -> Path:  # noqa: N802 - a location, computed (DOCQA_MODELS_DIR may change in tests)
    from docqa.models import models_dir

    return models_dir() / "docqa-reader"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
