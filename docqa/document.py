"""The parsed form of one source document, shared by every loader and the chunkers.

A loader turns a file into one or more ``Document`` objects (a JSONL file gives one per record).
A document is an ordered list of ``Block``s: headings, paragraphs and tables (Markdown text).
Chunkers never merge across a heading; every block carries the heading path it sits under and, for
paged formats, its 1-based page number, so citations can point back.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import Enum


class BlockKind(str, Enum):
    HEADING = "heading"
    PARAGRAPH = "paragraph"
    TABLE = "table"  # text is a Markdown table, first row the header (ingest/loaders/tables.py)


@dataclass
class Block:
    text: str
    kind: BlockKind = BlockKind.PARAGRAPH
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    level: int = 0  # heading level (1 = top) for headings, 0 for paragraphs
    # statute/standard structure (ingest.structure.annotate): the article or numbered clause the block
    # belongs to ("第十九条", "4.1.2") and its pinpoint ("第十九条第一款"); "" outside any
    article: str = ""
    label: str = ""
    confidence: float | None = None  # OCR recognition confidence (lowest of its lines); None: not OCR

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Block:
        return cls(
            text=d["text"],
            kind=BlockKind(d.get("kind", "paragraph")),
            heading_path=list(d.get("heading_path") or []),
            page=d.get("page"),
            level=int(d.get("level") or 0),
            article=d.get("article") or "",
            label=d.get("label") or "",
            confidence=d.get("confidence"),
        )


def ocr_confidence(text: str, page: int | None, blocks: list[Block]) -> float | None:
    """The OCR confidence of a unit made from ``blocks`` (a document's): the lowest of the scanned blocks
    on its page that it holds or lies in, ignoring whitespace (chunking joins and splits blocks); None
    when none was scanned."""
    flat = "".join(text.split())
    conf = []
    for b in blocks:
        if b.confidence is None or (page is not None and b.page != page):
            continue
        block = "".join(b.text.split())
        if block and (block in flat or flat in block):
            conf.append(b.confidence)
    return round(min(conf), 3) if conf else None


@dataclass
class Document:
    """One document: ``doc_id`` is its identity in a knowledge base.

    For files it is derived from the absolute path (``doc_id_for_path``); for JSONL records it is
    the record's own ``id``. ``content_hash`` decides whether a re-ingest has anything to do.
    """

    doc_id: str
    source: str  # absolute path, or "path#id" for a JSONL record
    title: str
    blocks: list[Block]
    content_hash: str
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(b.text for b in self.blocks)

    def to_dict(self) -> dict:
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "blocks": [b.to_dict() for b in self.blocks],
            "content_hash": self.content_hash,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Document:
        return cls(
            doc_id=d["doc_id"],
            source=d["source"],
            title=d.get("title", ""),
            blocks=[Block.from_dict(b) for b in d.get("blocks", [])],
            content_hash=d.get("content_hash", ""),
            meta=dict(d.get("meta") or {}),
        )


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def doc_id_for_path(abs_path: str) -> str:
    """Stable id of a file document: 16 hex chars of the SHA-256 of its absolute path."""
    return sha256_hex(abs_path)[:16]


def public_source(source: str) -> str:
    """Where a document came from, as any caller is told it: the file's name ("rules.jsonl#r7" for a
    JSONL record), never the server's folders (``source`` itself is the absolute path the KB keeps)."""
    i = source.find(".jsonl#")
    if i >= 0:
        return source[: i + 6].replace("\\", "/").rsplit("/", 1)[-1] + source[i + 6:]
    return source.replace("\\", "/").rsplit("/", 1)[-1]
