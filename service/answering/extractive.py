"""The extractive answerer: the no-LLM default. Quotes the evidence sentences that best answer
the question, each followed by its [n] citation; refuses when none supports it well enough.

Sentences (split at 。！？； and English enders) of the top passages are scored by
``evidence.support_scores``; the best one is the answer, and the runner-up joins it when it is
nearly as good and from a different place. Quoting never invents facts, so the answer can only be
as wrong as the retrieval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.search import Hit
from ingest.sentences import split_sentences

from .evidence import support_scores

SECOND_SENTENCE_RATIO = 0.7  # the runner-up is quoted too when it scores at least this share of the best
# ... and at least this share of the refusal threshold: the threshold decides whether to answer at all;
# once answering, a runner-up nearly as good as the best ("七、国庆节：...共7天" after the notice's
# opening sentence) is worth quoting even a little below it.
RUNNER_UP_FLOOR = 0.8
MAX_SENTENCES_PER_PASSAGE = 40


@dataclass
class Scored:
    hit_index: int
    sentence: str
    score: float


def score_sentences(question: str, hits: list[Hit], embedder) -> list[Scored]:
    """Every sentence of the hits with its support score, best first."""
    cands: list[tuple[int, str]] = []
    for i, h in enumerate(hits):
        sents = [s for part in h.text.split("\n") for s in _clauses(part)]
        cands.extend((i, s) for s in sents[:MAX_SENTENCES_PER_PASSAGE])
    if not cands:
        return []
    texts = [s for _, s in cands]
    q_vec = s_vecs = None
    if embedder is not None:
        vecs = embedder.encode_docs(texts)
        q_vec = embedder.encode_queries([question])[0]
        s_vecs = vecs
    scores = support_scores(question, texts, q_vec, s_vecs)
    # earlier-ranked passages win ties: retrieval order is evidence too
    order = sorted(range(len(cands)), key=lambda j: (-float(scores[j]), cands[j][0]))
    return [Scored(cands[j][0], cands[j][1], float(scores[j])) for j in order]


def _clauses(text: str) -> list[str]:
    """Sentences, with a bare article label ("第十九条") kept on its first clause."""
    out: list[str] = []
    for s in split_sentences(text):
        if out and len(out[-1]) <= 8 and not out[-1].endswith(("。", "！", "？", "；", ".", "!", "?", ";")):
            out[-1] = f"{out[-1]} {s}"
        else:
            out.append(s)
    return out


def compose(scored: list[Scored], threshold: float) -> tuple[list[Scored], float]:
    """The sentences to quote (possibly none) and the best support score."""
    if not scored:
        return [], 0.0
    best = scored[0]
    if best.score < threshold:
        return [], best.score
    chosen = [best]
    for s in scored[1:3]:
        floor = max(RUNNER_UP_FLOOR * threshold, SECOND_SENTENCE_RATIO * best.score)
        if s.score >= floor and s.sentence != best.sentence:
            chosen.append(s)
            break
    return chosen, best.score


def render(chosen: list[Scored], number_of: dict[int, int]) -> str:
    parts = []
    for s in chosen:
        sent = s.sentence.rstrip()
        parts.append(f"{sent}[{number_of[s.hit_index]}]")
    joiner = "" if any(ord(c) > 0x2E80 for c in "".join(p[:1] for p in parts)) else " "
    return joiner.join(parts)


def top_support(scored: list[Scored]) -> float:
    return float(np.max([s.score for s in scored])) if scored else 0.0
