"""Retrieval units: what is indexed and what is handed to the answerer.

A unit has two faces (the two-level index of DESIGN.md): ``keyinfo`` is level 1, the key
information that is embedded and searched together with the text; ``text`` is level 2, the
original passage given to the LLM and cited. Units exist at three levels (article, segment,
sentence); each keeps its parent so a hit can be expanded to its segment or article.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    ARTICLE = "article"
    SEGMENT = "segment"
    SENTENCE = "sentence"


@dataclass
class Unit:
    doc_id: str
    text: str
    level: Level = Level.SEGMENT
    ord: int = 0  # position among the document's units of the same level
    keyinfo: str = ""
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    parent_ord: int | None = None  # ord of the parent unit (segment for a sentence, ...)
    label: str = ""  # pinpoint within the document: "第十九条", "第四条第二款至第四款", "4.1.2" (ingest.structure)
    unit_id: int = -1  # assigned by the knowledge base on commit
    parent_id: int | None = None  # assigned by the knowledge base on commit
    # The unit's vector when ingestion computed it in the segment pass (ingest/chunking/levels.py);
    # None: the writer embeds ``embed_input``. Never stored with the unit (FAISS holds vectors).
    vector: Any = field(default=None, repr=False, compare=False)
    # A segment's evidence vectors when already computed (a KB copied or imported: its sentences', then their
    # clauses', in docqa/kb/evidence.py's order); None: the writer embeds them. Never stored with the unit.
    evidence: Any = field(default=None, repr=False, compare=False)
    # Each line's label while chunking (a sentence unit takes its line's: its 款); never stored.
    line_labels: list[str] = field(default_factory=list, repr=False, compare=False)

    def embed_input(self, what: str = "text") -> str:
        """The text the embedder sees (``Settings.embed``): ``keyinfo`` (level 1 only; the text when a
        unit has no key info), ``text`` (level 2 only) or ``both`` (key info first, then the text).

        The default matches ``Settings.embed``'s; pass the KB's setting to get what its index embeds.
        Key-info-only vectors match short questions about a topic; text vectors match questions that
        paraphrase a sentence; ``both`` hedges (see bench/reports/chunking_retrieval.md)."""
        what = getattr(what, "value", what)
        if what == "keyinfo":
            return self.keyinfo or self.text
        if what == "text" or not self.keyinfo:
            return self.text
        return f"{self.keyinfo}\n{self.text}"

    def lexical_input(self) -> str:
        """The text the keyword engine indexes: key info and original text both."""
        return f"{self.keyinfo}\n{self.text}" if self.keyinfo else self.text
