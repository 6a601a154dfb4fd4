"""Hard negatives mined from the KB's own hybrid index, with guards against false negatives.

For each query we run the same hybrid search as serving and sample negatives from a *rank window*
(default ranks 11-100): the top ranks are too often other correct passages, the tail too easy to
teach anything. A candidate is dropped when

* it is in the positive's own section (same document and heading path; same document when the
  KB has no headings) or its text overlaps the positive;
* it is too close to the query relative to the positive: ``sim(q, c) > margin * sim(q, pos)``
  ("positive-aware" mining, NV-Retriever 2024). This guard matters most when mining with an
  already fine-tuned model, which ranks unlabeled correct passages high and would otherwise feed
  them back as negatives;
* it is a near-duplicate of the positive: ``sim(pos, c) > max_pos_sim``.

Pick a narrower window (e.g. 30-100) on KBs with much repeated text (contracts with boilerplate),
where the near ranks are full of passages that also answer the query.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from docqa.errors import UserError
from finetune.embed.data import Pair, _progress


@dataclass(frozen=True)
class MiningConfig:
    """Knobs of the miner; the defaults suit KBs of a few thousand to a few million units."""

    rank_lo: int = 10  # skip this many top hits (likely unlabeled positives)
    rank_hi: int = 100  # sample from ranks rank_lo+1 .. rank_hi
    per_query: int = 1  # negatives kept per pair (more only helps with large batches)
    margin: float = 0.95  # drop candidates scoring above margin * sim(query, positive)
    max_pos_sim: float = 0.95  # drop near-duplicates of the positive
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank_lo < self.rank_hi:
            raise UserError(f"rank window must satisfy 0 <= lo < hi, got {self.rank_lo}-{self.rank_hi}")
        if self.per_query < 1:
            raise UserError("per_query must be at least 1")


class _VecCache:
    """Embeddings of texts, computed once per text with the mining embedder."""

    def __init__(self, embedder):
        self.embedder = embedder
        self._docs: dict[str, np.ndarray] = {}

    def docs(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._docs))
        if missing:
            for t, v in zip(missing, self.embedder.encode_docs(missing), strict=False):
                self._docs[t] = v
        return np.stack([self._docs[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)


def mine_hard_negatives(kb, pairs: list[Pair], config: MiningConfig = MiningConfig(), *,
                        embedder=None) -> list[Pair]:
    """New pairs with up to ``config.per_query`` mined negatives appended to each pair's ``neg``.

    ``kb`` is an ``docqa.kb.KnowledgeBase``; ``embedder`` (an ``docqa.models.embedder.Embedder``) scores
    the guards and defaults to the KB's own. Pairs for which every candidate is excluded keep only
    the negatives they had.
    """
    from docqa.search import search

    rng = random.Random(config.seed)
    cache = _VecCache(embedder or kb.embedder)
    out: list[Pair] = []
    for pair in _progress(pairs, "mine negatives"):
        hits = search(kb, pair.query, k=config.rank_hi)[config.rank_lo:config.rank_hi]
        keep = [h for h in hits if not same_section(pair, h) and not overlaps(pair, h.text)]
        units = kb.store.get_units([h.unit_id for h in keep])
        # exactly what the index embeds for the returned unit (the KB's `embed` setting)
        cands = [units[h.unit_id].embed_input(kb.settings.embed) for h in keep if h.unit_id in units]
        cands = list(dict.fromkeys(cands))
        kept = _similarity_guard(cache, pair, cands, config) if cands else []
        chosen = rng.sample(kept, min(config.per_query, len(kept)))
        out.append(Pair(pair.query, pair.pos, pair.neg + chosen, pair.section))
    return out


def same_section(pair: Pair, hit) -> bool:
    """The hit is in the positive's own section (same document and heading path)."""
    if pair.section is None:
        return False
    doc_id, path = pair.section
    return hit.doc_id == doc_id and (not path or tuple(hit.heading_path) == path)


def overlaps(pair: Pair, text: str) -> bool:
    """The text holds a positive or lies inside one."""
    t = text.strip()
    return any(t and (t in p or p.strip() in t) for p in pair.pos)


def _similarity_guard(cache: _VecCache, pair: Pair, cands: list[str], config: MiningConfig) -> list[str]:
    q = cache.embedder.encode_queries([pair.query])[0]
    pos = cache.docs(pair.pos)
    c = cache.docs(cands)
    pos_score = float((pos @ q).max())
    q_scores = c @ q
    dup_scores = (c @ pos.T).max(axis=1)
    keep = (q_scores <= config.margin * pos_score) & (dup_scores <= config.max_pos_sim)
    return [t for t, k in zip(cands, keep, strict=False) if k]
