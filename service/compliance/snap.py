"""Snap: replace the draft with the closest approved reply, or refuse to reply freely at all.

``approved.jsonl`` is the library of replies the compliance team has signed off, one JSON object a
line: ``{"id", "stage", "lang", "text"}``. In snap mode the user only ever sees text from this
library or from the fallbacks, never the draft itself; the draft only chooses which approved reply.

Candidates are the replies in the question's language and, when the request names a stage the
library has, of that stage (a complaint never snaps to a greeting). The library is embedded once,
with the knowledge base's embedder, on first use (``warm_up``).

Pick snap over guard for scripted desks (hotlines, counters) where legal has approved every
sentence in advance; pick guard where answers must carry document facts the library cannot hold.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docqa.errors import UserError
from service.compliance.fallbacks import Lang

APPROVED_FILE = "approved.jsonl"


class ApprovedLibraryError(UserError):
    """An approved-replies file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class ApprovedReply:
    id: str
    stage: str
    lang: Lang
    text: str


@dataclass(frozen=True)
class SnapMatch:
    reply: ApprovedReply | None  # the best candidate (None when the library has no candidate)
    score: float  # its cosine similarity to the draft


def read_approved(path: Path) -> list[ApprovedReply]:
    """Parse ``approved.jsonl``; records are split on '\\n' only (texts may hold U+2028)."""
    if not path.is_file():
        return []
    out: list[ApprovedReply] = []
    seen: set[str] = set()
    for i, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            reply = ApprovedReply(str(rec["id"]), str(rec["stage"]), Lang(rec["lang"]), str(rec["text"]).strip())
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ApprovedLibraryError(f"{path}:{i}: expected {{\"id\", \"stage\", \"lang\": \"zh\"|\"en\", "
                                       f"\"text\"}} ({type(e).__name__}: {e})") from None
        if not reply.text:
            raise ApprovedLibraryError(f"{path}:{i}: reply {reply.id!r} has an empty text")
        if reply.id in seen:
            raise ApprovedLibraryError(f"{path}:{i}: duplicate reply id {reply.id!r}")
        seen.add(reply.id)
        out.append(reply)
    return out


class ApprovedLibrary:
    """The approved replies with their embeddings; ``best(draft, lang, stage)`` finds the closest."""

    def __init__(self, replies: list[ApprovedReply], embedder):
        self.replies = replies
        self.embedder = embedder
        self._vecs: np.ndarray | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path, embedder) -> ApprovedLibrary:
        return cls(read_approved(directory / APPROVED_FILE), embedder)

    @property
    def stages(self) -> set[str]:
        return {r.stage for r in self.replies}

    def warm_up(self) -> None:
        """Embed the library (once); thread-safe."""
        if self._vecs is not None:
            return
        with self._lock:
            if self._vecs is None:
                self._vecs = self.embedder.encode_docs([r.text for r in self.replies])

    def candidates(self, lang: Lang, stage: str | None) -> list[int]:
        same_lang = [i for i, r in enumerate(self.replies) if r.lang == lang]
        if stage and any(self.replies[i].stage == stage for i in same_lang):
            return [i for i in same_lang if self.replies[i].stage == stage]
        return same_lang

    def best(self, draft: str, lang: Lang, stage: str | None) -> SnapMatch:
        """The candidate most similar to ``draft`` (cosine of normalised embeddings)."""
        idx = self.candidates(lang, stage)
        if not idx or not draft.strip():
            return SnapMatch(None, 0.0)
        self.warm_up()
        q = self.embedder.encode_docs([draft])[0]
        sims = self._vecs[idx] @ q
        j = int(np.argmax(sims))
        return SnapMatch(self.replies[idx[j]], float(sims[j]))
