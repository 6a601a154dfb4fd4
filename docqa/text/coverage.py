"""How well a passage sentence answers a question: the score behind sentence choice and refusal.

``support(question, sentence)`` = term coverage + ``DENSE_WEIGHT`` x cosine similarity.
Term coverage is the share of the question's content terms (jieba search-mode tokens, stopwords
and question words removed, each weighted by its length in characters, so "试用期" counts more than
"期") that occur verbatim in the sentence. It is language-neutral, needs no model, and is robust
where a general embedder is weak (Chinese with all-MiniLM-L6-v2); the cosine term breaks ties and
carries paraphrases in English.
"""

from __future__ import annotations

import re

import numpy as np

from docqa.text.language import HAN
from docqa.text.tokenize import STOPWORDS, query_terms

DENSE_WEIGHT = 0.3
_QWORDS = set("""哪 谁 何 几 多 么 吗 呢 是 有 的 要 会 能 多久 多长 多长时间 什么 哪些 哪里 时候 什么时候 为什么 怎么
    怎么样 如何 多少 是否 可否 可以 哪天 哪一天 几天 情况 规定 要求 how many much long does what which""".split())


def content_terms(question: str) -> list[str]:
    """Terms of the question that an answer sentence should contain."""
    return [t for t in query_terms(question) if t not in _QWORDS and t not in STOPWORDS and
            (len(t) > 1 or not HAN.match(t))]


def contains(term: str, low_sentence: str) -> bool:
    """Chinese terms match as substrings (no spaces between words); Latin terms and numbers only as
    whole words, so "hi" is not found in "this" nor "19" in "2019". A Latin word also matches its
    regular inflections ("open" in "opens", "opened", "opening"; "policy" in "policies"), which a
    question and its answer sentence rarely share verbatim."""
    if HAN.match(term):
        return term in low_sentence
    if term.isdigit():
        return re.search(rf"(?<![a-z0-9]){term}(?![a-z0-9])", low_sentence) is not None
    stem = re.escape(term[:-1]) + "(?:y|ie)" if term.endswith("y") and len(term) > 3 else re.escape(term)
    return re.search(rf"(?<![a-z0-9]){stem}(?:s|es|d|ed|ing)?(?![a-z0-9])", low_sentence) is not None


def coverage(terms: list[str], sentence: str, weights: dict[str, float] | None = None) -> float:
    """Weighted share of ``terms`` found in ``sentence`` (weight = length x rarity)."""
    if not terms:
        return 0.0
    low = sentence.lower()
    w = weights or {t: float(len(t)) for t in terms}
    total = sum(w[t] for t in terms)
    return sum(w[t] for t in terms if contains(t, low)) / total if total else 0.0


def term_weights(terms: list[str], sentences: list[str]) -> dict[str, float]:
    """Length x a smoothed IDF over the candidate sentences: a term every candidate shares (the year
    in "2019年国庆节放假几天" when all passages are the 2019 notice) tells sentences apart less than
    one only the answer has. Smoothed so that a term in every sentence still counts half."""
    lows = [s.lower() for s in sentences]
    n = max(len(lows), 1)
    out = {}
    for t in terms:
        df = sum(1 for s in lows if contains(t, s))
        out[t] = len(t) * (0.5 + 0.5 * np.log1p(n / (1 + df)) / np.log1p(n))
    return out


def coverages(question: str, sentences: list[str]) -> np.ndarray:
    """Term coverage of each sentence (weights from all of them: ``term_weights``)."""
    terms = content_terms(question)
    weights = term_weights(terms, sentences)
    return np.array([coverage(terms, s, weights) for s in sentences], dtype=np.float32)


def combine(cov: np.ndarray, q_vec: np.ndarray, s_vecs: np.ndarray) -> np.ndarray:
    """Support from coverage and vectors; never more than ``cov + DENSE_WEIGHT`` (the cosine is clipped)."""
    cos = (s_vecs @ q_vec.reshape(-1)).astype(np.float32)
    return cov + DENSE_WEIGHT * np.clip(cos, 0.0, 1.0)


def support_scores(question: str, sentences: list[str], q_vec: np.ndarray | None,
                   s_vecs: np.ndarray | None) -> np.ndarray:
    cov = coverages(question, sentences)
    if q_vec is None or s_vecs is None or len(sentences) == 0:
        return cov
    return combine(cov, q_vec, s_vecs)
