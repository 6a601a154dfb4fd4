"""Hybrid retrieval over one KB: dense (FAISS) + keyword (tantivy/ES), fused by weighted RRF.

Reciprocal rank fusion scores a unit ``sum_r w_r / (rrf_k + rank_r)`` over the retrievers that
returned it. It needs no score calibration between BM25 and cosine, which live on unrelated
scales; the weights let a KB lean on the retriever that works for its language and model (see
bench/retrieval.py for the numbers behind the defaults).

Two-level mapping (DESIGN.md): a unit matched at any level is handed back as its level-2 text at
segment granularity: a sentence hit is expanded to its segment (the clause WITH its condition), an
article hit to its best-ranked segment (else its first). When several hits land on the same
segment (a sentence and the segment containing it, two sentences of one segment, an article and
its segment) only the best-ranked is kept, so the answerer never reads one passage twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from docqa.document import public_source
from docqa.filters import DocFilter
from docqa.kb import KnowledgeBase
from docqa.kb.knowledge_base import Allowed
from docqa.labels import parse_reference, pinpoint
from docqa.lexical import terms_for_query
from docqa.units import Level, Unit


class Mode(StrEnum):
    HYBRID = "hybrid"
    DENSE = "dense"
    KEYWORD = "keyword"


@dataclass
class Hit:
    unit_id: int  # the unit whose text is returned (a segment for sentence and article matches)
    doc_id: str
    source: str
    title: str
    text: str  # level 2: the original text handed to the answerer and cited
    score: float
    level: str = "segment"  # the level that matched: article | segment | sentence
    keyinfo: str = ""  # level 1: the matched unit's key info
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    dense_score: float | None = None  # cosine similarity, when the dense retriever found it
    lexical_score: float | None = None  # BM25, when the keyword retriever found it
    # the matched unit's rank (1 = first) in each retriever's list of units of every level, None when that
    # retriever did not return it: why a passage ranks where it does (the console's retrieval test)
    dense_rank: int | None = None
    lexical_rank: int | None = None
    rerank_score: float | None = None  # the cross-encoder's relevance in [0, 1], when the KB reranks
    matched_unit_id: int | None = None  # the unit that matched (differs from unit_id after expansion)
    matched_text: str = ""  # the matched sentence, or the article title, when expanded
    label: str = ""  # pinpoint citation: 《中华人民共和国劳动合同法》第十九条第一款 (ingest.structure)
    exact: bool = False  # found by the article the question names, before any similarity search

    def to_dict(self) -> dict:
        return asdict(self)

    def public(self, *, server_paths: bool = False) -> dict:
        """The fields promised by ``POST /v1/search`` and ``docqa search --json``. ``source`` is the file's name
        (``docqa.document.public_source``), never the server's folders; the CLI, run by the operator on the
        server, asks for the full path with ``server_paths``."""
        source = self.source if server_paths else public_source(self.source)
        return {"doc_id": self.doc_id, "source": source, "title": self.title, "text": self.text,
                "score": round(self.score, 6), "unit_id": self.unit_id, "level": self.level,
                "keyinfo": self.keyinfo, "heading_path": self.heading_path, "page": self.page,
                "matched_unit_id": self.matched_unit_id, "matched_text": self.matched_text,
                "label": self.label, "exact": self.exact, "rerank_score": self.rerank_score,
                "dense_rank": self.dense_rank, "dense_score": _round(self.dense_score),
                "lexical_rank": self.lexical_rank, "lexical_score": _round(self.lexical_score)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def relevance(hit: Hit, settings) -> float:
    """A hybrid hit's score on 0-1, for clients that threshold scores (Dify's ``score_threshold``): the
    cross-encoder's relevance when the KB reranks; 1.0 for an article found by its label; else the fused RRF
    score as a share of the best one possible (ranked first by every retriever): 1.0 = first in both dense and
    keyword rankings, about 0.5 = first in one and absent from the other, falling with rank. It orders hits as
    their ``score`` does; it is not a probability that the passage answers."""
    if hit.rerank_score is not None:
        return float(min(1.0, max(0.0, hit.rerank_score)))
    if hit.exact:
        return 1.0
    best = sum(w for w in (settings.dense_weight, settings.lexical_weight) if w > 0) / (settings.rrf_k + 1)
    return float(min(1.0, max(0.0, hit.score / best))) if best > 0 else 0.0


def rrf(rankings: list[list[int]], weights: list[float], k: int = 60) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of ranked id lists -> [(id, score)] best first."""
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        if w <= 0:
            continue
        for rank, uid in enumerate(ranking, start=1):
            scores[uid] = scores.get(uid, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def search(kb: KnowledgeBase, query: str, k: int = 5, *, mode: Mode | str = Mode.HYBRID,
           where: DocFilter | None = None) -> list[Hit]:
    """The ``k`` best passages for ``query``: distinct level-2 texts, best first.

    ``where``: the caller's groups and metadata conditions (``docqa.filters``), applied inside both
    retrievers before fusion, so documents it excludes never compete for a rank.

    A query that names an article ("劳动合同法第十九条规定了什么", "第19条") gets that article first, found
    by its label (``exact``), then the similarity results."""
    mode = Mode(mode)
    s = kb.settings
    allowed = kb.allowed(where)
    if allowed is not None and not allowed.doc_ids:
        return []
    exact = _by_label(kb, query, k, allowed)
    if len(exact) >= k:
        return exact
    dense: list[tuple[int, float]] = []
    lexical: list[tuple[int, float]] = []
    if mode in (Mode.HYBRID, Mode.DENSE):
        qv = kb.embedder.encode_queries([query])
        dense = kb.vectors.search(qv, max(k, s.dense_k), None if allowed is None else allowed.faiss_selector())[0]
    if mode in (Mode.HYBRID, Mode.KEYWORD):
        lexical = kb.lexical.search(terms_for_query(query), max(k, s.lexical_k),
                                    doc_ids=None if allowed is None else allowed.doc_ids)
    if mode == Mode.DENSE:
        fused = dense
    elif mode == Mode.KEYWORD:
        fused = lexical
    else:
        fused = rrf([[i for i, _ in dense], [i for i, _ in lexical]], [s.dense_weight, s.lexical_weight], s.rrf_k)
    wanted = max(k, s.rerank_top_n) if s.rerank_model else k
    taken = {h.unit_id for h in exact}
    rest = [h for h in _two_level(kb, fused, wanted + len(exact), _ranked(dense), _ranked(lexical), allowed)
            if h.unit_id not in taken]
    if s.rerank_model:
        rest = rerank(kb, query, rest[: s.rerank_top_n])
    return exact + rest[: k - len(exact)]


def rerank(kb: KnowledgeBase, query: str, hits: list[Hit]) -> list[Hit]:
    """``hits`` reordered by the KB's cross-encoder (``docqa.models.rerank``), each with its ``rerank_score``.
    Unchanged when the reranker cannot be loaded: ``kb.reranker_error`` then says why (the answer is
    marked as given without reranking)."""
    reranker = kb.reranker()
    if reranker is None:
        return hits
    scores = reranker.score(query, [h.text for h in hits])
    for h, sc in zip(hits, scores, strict=True):
        h.rerank_score = float(sc)
    return sorted(hits, key=lambda h: -h.rerank_score)


def _by_label(kb: KnowledgeBase, query: str, k: int, allowed: Allowed | None) -> list[Hit]:
    """Segments of the article the query names, in document order (``structure.parse_reference``).

    With a law named, only documents whose title is that law; without one, every document that has
    the article. Nothing when the query names no article."""
    ref = parse_reference(query)
    if ref is None:
        return []
    units = [u for u in kb.store.segments_labelled(ref.key) if ref.matches(u.label)
             and (allowed is None or u.doc_id in allowed.doc_ids)]
    docs = kb.store.doc_sources(list({u.doc_id for u in units}))
    units = [u for u in units if ref.names(docs.get(u.doc_id, ("", ""))[1])]
    hits = []
    for u in units[:k]:
        source, title = docs.get(u.doc_id, ("", ""))
        hits.append(Hit(unit_id=u.unit_id, doc_id=u.doc_id, source=source, title=title, text=u.text, score=1.0,
                        level=u.level.value, keyinfo=u.keyinfo, heading_path=u.heading_path, page=u.page,
                        matched_unit_id=u.unit_id, label=pinpoint(title, u.label), exact=True))
    return hits


def _ranked(results: list[tuple[int, float]]) -> dict[int, tuple[int, float]]:
    """{unit id: (rank from 1, score)} of one retriever's results."""
    return {uid: (rank, score) for rank, (uid, score) in enumerate(results, start=1)}


def _two_level(kb: KnowledgeBase, fused: list[tuple[int, float]], k: int, dmap: dict, lmap: dict,
               allowed: Allowed | None = None) -> list[Hit]:
    """Map ranked matches to their level-2 segments and keep each segment once (best rank wins)."""
    units = kb.store.get_units([i for i, _ in fused])
    parents = kb.store.get_units(list({u.parent_id for u in units.values()
                                       if u.level == Level.SENTENCE and u.parent_id is not None}))
    seg_of = {**{uid: u for uid, u in units.items() if u.level == Level.SEGMENT}, **parents}
    docs = kb.store.doc_sources(list({u.doc_id for u in units.values()}))
    hits: list[Hit] = []
    seen: set[int] = set()
    for uid, score in fused:
        u = units.get(uid)
        if u is None:  # index and store disagree: never show a unit the store does not have
            continue
        if allowed is not None and u.doc_id not in allowed.doc_ids:
            continue  # cannot happen with the filters above; a second lock on the same door
        target = _level2(kb, u, fused, units, seg_of)
        if target.unit_id in seen:
            continue  # contained in a better-ranked hit
        seen.add(target.unit_id)
        source, title = docs.get(u.doc_id, ("", ""))
        matched_text = "" if target.unit_id == uid else (title if u.level == Level.ARTICLE else u.text)
        hits.append(Hit(unit_id=target.unit_id, doc_id=u.doc_id, source=source, title=title, text=target.text,
                        score=score, level=u.level.value, keyinfo=u.keyinfo, heading_path=target.heading_path,
                        page=target.page, dense_score=dmap.get(uid, (None, None))[1],
                        lexical_score=lmap.get(uid, (None, None))[1], dense_rank=dmap.get(uid, (None, None))[0],
                        lexical_rank=lmap.get(uid, (None, None))[0],
                        matched_unit_id=uid, matched_text=matched_text, label=pinpoint(title, target.label)))
        if len(hits) >= k:
            break
    return hits


def _level2(kb: KnowledgeBase, u: Unit, fused: list[tuple[int, float]], units: dict[int, Unit],
            seg_of: dict[int, Unit]) -> Unit:
    """The segment whose text answers for ``u`` (``u`` itself for a segment)."""
    if u.level == Level.SENTENCE:
        return seg_of.get(u.parent_id, u)
    if u.level != Level.ARTICLE:
        return u
    for uid, _ in fused:  # the article's best-ranked segment among the candidates
        c = units.get(uid)
        seg = None if c is None else (c if c.level == Level.SEGMENT else seg_of.get(c.parent_id))
        if seg is not None and seg.doc_id == u.doc_id and seg.parent_id == u.unit_id:
            return seg
    segs = [x for x in kb.store.units_of_doc(u.doc_id) if x.level == Level.SEGMENT]
    return min(segs, key=lambda x: x.ord) if segs else u
