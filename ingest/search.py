"""Hybrid retrieval over one KB: dense (FAISS) + keyword (tantivy/ES), fused by weighted RRF.

Reciprocal rank fusion scores a unit ``sum_r w_r / (rrf_k + rank_r)`` over the retrievers that
returned it. It needs no score calibration between BM25 and cosine, which live on unrelated
scales; the weights let a KB lean on the retriever that works for its language and model (see
bench/retrieval.py for the numbers behind the defaults).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from .kb import KnowledgeBase
from .lexical import terms_for_query


class Mode(str, Enum):
    HYBRID = "hybrid"
    DENSE = "dense"
    KEYWORD = "keyword"


@dataclass
class Hit:
    unit_id: int
    doc_id: str
    source: str
    title: str
    text: str
    score: float
    level: str = "segment"
    keyinfo: str = ""
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    dense_score: float | None = None  # cosine similarity, when the dense retriever found it
    lexical_score: float | None = None  # BM25, when the keyword retriever found it

    def to_dict(self) -> dict:
        return asdict(self)

    def public(self) -> dict:
        """The fields promised by ``docqa search --json`` and ``POST /v1/search``."""
        return {"doc_id": self.doc_id, "source": self.source, "title": self.title, "text": self.text,
                "score": round(self.score, 6), "unit_id": self.unit_id, "level": self.level,
                "keyinfo": self.keyinfo, "heading_path": self.heading_path, "page": self.page}


def rrf(rankings: list[list[int]], weights: list[float], k: int = 60) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of ranked id lists -> [(id, score)] best first."""
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        if w <= 0:
            continue
        for rank, uid in enumerate(ranking, start=1):
            scores[uid] = scores.get(uid, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def search(kb: KnowledgeBase, query: str, k: int = 5, *, mode: Mode | str = Mode.HYBRID) -> list[Hit]:
    """The ``k`` best units for ``query``."""
    mode = Mode(mode)
    s = kb.settings
    dense: list[tuple[int, float]] = []
    lexical: list[tuple[int, float]] = []
    if mode in (Mode.HYBRID, Mode.DENSE):
        qv = kb.embedder.encode_queries([query])
        dense = kb.vectors.search(qv, max(k, s.dense_k))[0]
    if mode in (Mode.HYBRID, Mode.KEYWORD):
        lexical = kb.lexical.search(terms_for_query(query), max(k, s.lexical_k))
    if mode == Mode.DENSE:
        fused = dense
    elif mode == Mode.KEYWORD:
        fused = lexical
    else:
        fused = rrf([[i for i, _ in dense], [i for i, _ in lexical]], [s.dense_weight, s.lexical_weight], s.rrf_k)
    top = fused[:k]
    units = kb.store.get_units([i for i, _ in top])
    docs = kb.store.doc_sources(list({u.doc_id for u in units.values()}))
    dmap, lmap = dict(dense), dict(lexical)
    hits: list[Hit] = []
    for uid, score in top:
        u = units.get(uid)
        if u is None:  # index and store disagree: never show a unit the store does not have
            continue
        source, title = docs.get(u.doc_id, ("", ""))
        hits.append(Hit(unit_id=uid, doc_id=u.doc_id, source=source, title=title, text=u.text, score=score,
                        level=u.level.value, keyinfo=u.keyinfo, heading_path=u.heading_path, page=u.page,
                        dense_score=dmap.get(uid), lexical_score=lmap.get(uid)))
    return hits
