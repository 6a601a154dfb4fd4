"""Where the trained files of the reader network are: each shipped file (trained top layers and heads) beside this
module with its checksum and card, its build under ``models_dir()/docqa-<name>`` (see build.py), and the
checksum rule both sides use. Two files share the network (net.py): the reader (answer spans, card
READER_MODEL.md) and the grounding verifier (does a passage state a claim? grounding.py, card VERIFIER_MODEL.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

RECORD = "docqa_reader.json"
ONNX = "reader_int8.onnx"
_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Shipped:
    name: str  # reader | verifier
    card: str

    @property
    def delta(self) -> Path:
        return _HERE / f"{self.name}.safetensors"

    @property
    def checksum(self) -> Path:
        return _HERE / f"{self.name}.sha256"

    def build_dir(self) -> Path:  # computed: DOCQA_MODELS_DIR may change in tests
        from docqa.models import models_dir

        return models_dir() / f"docqa-{self.name}"


READER = Shipped("reader", "docqa/reader/READER_MODEL.md")
VERIFIER = Shipped("verifier", "docqa/reader/VERIFIER_MODEL.md")
SHIPPED = READER.delta
CHECKSUM = READER.checksum


def BUILD_DIR() -> Path:  # noqa: N802 - a location, computed (DOCQA_MODELS_DIR may change in tests)
    return READER.build_dir()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
