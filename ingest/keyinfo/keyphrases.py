"""Keyphrases: statistical candidates re-ranked by embedding similarity with MMR for diversity.

Candidates: Chinese text goes through jieba's TF-IDF (``extract_tags``, fast, the default) or
TextRank (POS-filtered nouns/verbs, slower, better on long texts); English (and other Latin-script
text) gives 1-3-word n-grams without stopwords at their edges, weighted by frequency and length.

Re-ranking (KeyBERT-style): relevance = mean of the candidate's normalised statistical weight and
its normalised cosine similarity with the text; Maximal Marginal Relevance then picks phrases that
are relevant AND unlike the ones already picked, so five keyphrases are not five spellings of one
idea. The statistical half keeps the ranking sane when the embedder is weak for the language
(all-MiniLM-L6-v2 on Chinese before ``docqa finetune embed``). All candidates of all texts are
embedded in one batched call.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from docqa.settings import KeyphraseCandidates
from docqa.text.language import HAN, Lang, lang_of
from docqa.text.tokenize import STOPWORDS, _get_jieba

_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]*|\d+(?:\.\d+)?")
_PUNCT = re.compile(r"[.,;:!?()\[\]{}\"“”‘’/|<>]+|\s[-–—]\s|'\s|\s'")
_TEXTRANK_POS = ("ns", "n", "vn", "v", "nr", "nt", "nz", "eng")
N_CANDIDATES = 20
MAIN_SHARE = 0.2  # a text is read as Chinese when Han characters are at least this share of it


def candidates(text: str, method: KeyphraseCandidates = KeyphraseCandidates.TFIDF,
               n: int = N_CANDIDATES) -> list[tuple[str, float]]:
    """Up to ``n`` (phrase, weight) candidates, best first."""
    if not text.strip():
        return []
    if lang_of(text, min_share=MAIN_SHARE) is not Lang.ZH:
        return english_candidates(text, n)
    _get_jieba()  # jieba initialised once, quietly
    import jieba.analyse

    if method == KeyphraseCandidates.TEXTRANK:
        pairs = jieba.analyse.textrank(text, topK=n * 2, withWeight=True, allowPOS=_TEXTRANK_POS)
    else:
        pairs = jieba.analyse.extract_tags(text, topK=n * 2, withWeight=True)
    keep = [(w, float(s)) for w, s in pairs if _good_zh(w)]
    return keep[:n]


def _good_zh(word: str) -> bool:
    if word in STOPWORDS or word.isdigit():
        return False
    return len(word) >= 2 or not HAN.match(word)


def english_candidates(text: str, n: int = N_CANDIDATES) -> list[tuple[str, float]]:
    """1-3-gram candidates of Latin-script text (no stopword at either end, never across punctuation),
    by frequency x length."""
    counts: Counter[str] = Counter()
    surface: dict[str, str] = {}
    for span in _PUNCT.split(text):
        words = _LATIN_WORD.findall(span)
        low = [w.lower() for w in words]
        for size in (1, 2, 3):
            for i in range(len(low) - size + 1):
                gram = low[i:i + size]
                if gram[0] in STOPWORDS or gram[-1] in STOPWORDS or gram[0].isdigit() or gram[-1].isdigit():
                    continue
                if size == 1 and len(gram[0]) < 3:
                    continue
                key = " ".join(gram)
                counts[key] += 1
                surface.setdefault(key, " ".join(words[i:i + size]))
    scored = sorted(((surface[k], c * (1 + 0.5 * (len(k.split()) - 1))) for k, c in counts.items()),
                    key=lambda x: -x[1])
    return scored[:n]


def mmr(doc_vec: np.ndarray, cand_vecs: np.ndarray, weights: np.ndarray, top_n: int,
        diversity: float = 0.3) -> list[int]:
    """Indices of ``top_n`` candidates by Maximal Marginal Relevance (``diversity`` 0 = pure relevance)."""
    if len(cand_vecs) == 0 or top_n <= 0:
        return []
    sim = cand_vecs @ doc_vec
    rel = 0.5 * _unit_range(sim) + 0.5 * _unit_range(weights)
    pair = cand_vecs @ cand_vecs.T
    chosen = [int(np.argmax(rel))]
    while len(chosen) < min(top_n, len(cand_vecs)):
        redundancy = pair[:, chosen].max(axis=1)
        score = (1 - diversity) * rel - diversity * redundancy
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen


def _unit_range(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 1e-9 else np.ones_like(x)


class Keyphraser:
    """Keyphrases of many texts at once. ``embedder`` None: statistical ranking only (no MMR)."""

    def __init__(self, embedder=None, *, top_n: int = 5, method: KeyphraseCandidates = KeyphraseCandidates.TFIDF,
                 diversity: float = 0.3):
        self.embedder = embedder
        self.top_n = top_n
        self.method = KeyphraseCandidates(method)
        self.diversity = diversity

    def select(self, doc_vec: np.ndarray, cands: list[tuple[str, float]], cand_vecs: np.ndarray) -> list[str]:
        """MMR over ``cands`` (best first) with their vectors already computed (zero rows: no vector,
        ranked by statistical weight alone)."""
        if not cands or self.top_n <= 0:
            return []
        picked = mmr(doc_vec, cand_vecs, np.array([s for _, s in cands]), self.top_n, self.diversity)
        return [cands[j][0] for j in picked]

    def extract(self, texts: list[str]) -> list[list[str]]:
        if self.top_n <= 0:
            return [[] for _ in texts]
        cands = [candidates(t, self.method) for t in texts]
        if self.embedder is None:
            return [[w for w, _ in c[:self.top_n]] for c in cands]
        phrases = list(dict.fromkeys(w for c in cands for w, _ in c))
        if not phrases:
            return [[] for _ in texts]
        # Two calls, not one: a batch is padded to its longest member, and 20 two-word phrases padded
        # to a 256-token segment cost 20 segments' worth of compute (6x slower ingest, measured).
        # The segment vectors come back from the embedder's cache when the index embeds them.
        doc_vecs = self.embedder.encode_docs(texts)
        pvecs = self.embedder.encode_docs(phrases)
        pos = {p: i for i, p in enumerate(phrases)}
        out = []
        for i, c in enumerate(cands):
            if not c:
                out.append([])
                continue
            cv = pvecs[[pos[w] for w, _ in c]]
            picked = mmr(doc_vecs[i], cv, np.array([s for _, s in c]), self.top_n, self.diversity)
            out.append([c[j][0] for j in picked])
        return out
