"""The extractive answerer: the no-LLM default. Quotes the evidence sentences that best answer
the question, each followed by its [n] citation; refuses when none supports it well enough.

Sentences (split at 。！？； and English enders) of the top passages are scored by
``evidence.combine`` (coverage + cosine); the best one is the answer, and the runner-up joins it when it is
nearly as good and from a different place. Quoting never invents facts, so the answer can only be
as wrong as the retrieval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from docqa.search import Hit
from docqa.text.coverage import DENSE_WEIGHT, combine, coverages
from docqa.text.evidence import evidence_sentences

SECOND_SENTENCE_RATIO = 0.7  # the runner-up is quoted too when it scores at least this share of the best
# ... and at least this share of the refusal threshold: the threshold decides whether to answer at all;
# once answering, a runner-up nearly as good as the best ("七、国庆节：...共7天" after the notice's
# opening sentence) is worth quoting even a little below it.
RUNNER_UP_FLOOR = 0.8
TOP = 3  # compose() reads the best sentence and the next two
SCORE_BATCH = 8  # sentences embedded per step of the bound-pruned scoring


@dataclass
class Scored:
    hit_index: int
    sentence: str
    score: float
    exact: bool = False  # quoted from the article the question names (quote_article)


def score_sentences(question: str, hits: list[Hit], embedder, evidence=None) -> list[Scored]:
    """The sentences of the hits that can matter, with their support scores, best first.

    ``evidence``: the KB's stored evidence vectors (docqa/kb/evidence.py): a passage whose sentences
    ingestion embedded is scored from them, nothing embedded now. The others: ``compose`` reads only the
    first ``TOP`` of this list, so a sentence that cannot reach them is never embedded: support = coverage
    + ``DENSE_WEIGHT`` x cosine with the cosine clipped to [0, 1], so coverage + ``DENSE_WEIGHT`` bounds a
    sentence's score from above, and sentences are embedded best bound first, in batches, until the
    ``TOP``-th exact score beats every bound left. The top of the list is exactly what scoring every
    sentence gives (tests/service/test_answering.py checks it on real questions); the work is a fraction
    of it on most questions (bench/load.py)."""
    per_hit = [evidence_sentences(h.text) for h in hits]
    cands = [(i, s) for i, sents in enumerate(per_hit) for s in sents]
    if not cands:
        return []
    texts = [s for _, s in cands]
    cov = coverages(question, texts)
    if embedder is None:
        return _ranked(cands, cov, range(len(cands)))
    q_vec = embedder.encode_queries([question])[0]
    scores = cov.copy()
    known: list[int] = []  # candidates scored from stored vectors
    start = 0
    for h, sents in zip(hits, per_hit, strict=True):
        vecs = evidence.lookup(h.unit_id, sents) if evidence is not None and sents else None
        if vecs is not None:
            idx = list(range(start, start + len(sents)))
            scores[idx] = combine(cov[idx], q_vec, vecs)
            known += idx
        start += len(sents)
    stored = set(known)
    by_bound = sorted((j for j in range(len(cands)) if j not in stored), key=lambda j: -cov[j])  # stable
    done = 0
    while done < len(by_bound):
        top = _ranked(cands, scores, known + by_bound[:done])[:TOP]
        if len(top) == TOP and top[-1].score > float(cov[by_bound[done]]) + DENSE_WEIGHT:
            break  # no sentence left can enter the top
        batch = by_bound[done: done + SCORE_BATCH]
        vecs = embedder.encode_docs([texts[j] for j in batch])
        scores[batch] = combine(cov[batch], q_vec, vecs)
        done += len(batch)
    return _ranked(cands, scores, known + by_bound[:done])


ARTICLE_SENTENCES = 6  # a named article is quoted up to this many sentences


def quote_article(hits: list[Hit]) -> list[Scored]:
    """When the question names an article and retrieval found it by its label (``Hit.exact``): that
    article's sentences in document order, scored 1.0 (an exact label match needs no similarity
    evidence). Empty otherwise, and the sentences are scored as usual."""
    exact = [i for i, h in enumerate(hits) if h.exact]
    out = [Scored(i, s, 1.0, exact=True) for i in exact for s in evidence_sentences(hits[i].text)]
    return out[:ARTICLE_SENTENCES]


def warm_evidence(kb, stop=None, progress=None) -> int:
    """Encode the evidence sentences of ``kb``'s segments that ingestion did not store (a KB ingested
    before docqa stored them: ``docqa reindex`` does) into the embedder's cache, so that answering
    does not pay for it on the first question that retrieves each passage (bench/load.py: a cold
    request cost ~30x a warm one). Meant for a background thread at start-up: it lowers its own
    priority, encodes sentences of similar length together (little padding) a few at a time on one
    thread, stops at the cache's capacity, and returns early when ``stop()`` says so; ``progress(done,
    total)`` is told as it goes. Returns how many sentences it encoded."""
    import os
    import threading

    from docqa.units import Level

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # Linux: this thread only
    except (AttributeError, OSError):
        pass
    room = int(kb.embedder.cache_capacity() * 0.8)
    texts: dict[str, None] = {}
    stored = kb.evidence
    for uid, seg in kb.store.texts_of_level(Level.SEGMENT, room, with_ids=True):
        sents = evidence_sentences(seg)
        if stored.lookup(uid, sents) is None:  # ingestion stored them: answers need no cache for these
            texts.update(dict.fromkeys(sents))
        if len(texts) >= room:
            break
    todo = sorted(list(texts)[:room], key=len)
    for i in range(0, len(todo), 4):
        if progress is not None and i % 256 == 0:
            progress(i, len(todo))
        if stop is not None and stop():
            return i
        kb.embedder.encode_docs(todo[i:i + 4])
    if progress is not None:
        progress(len(todo), len(todo))
    return len(todo)


def _ranked(cands: list[tuple[int, str]], scores: np.ndarray, which) -> list[Scored]:
    # earlier-ranked passages win ties: retrieval order is evidence too
    order = sorted(which, key=lambda j: (-float(scores[j]), cands[j][0], j))
    return [Scored(cands[j][0], cands[j][1], float(scores[j])) for j in order]


def compose(scored: list[Scored], threshold: float) -> tuple[list[Scored], float]:
    """The sentences to quote (possibly none) and the best support score."""
    if not scored:
        return [], 0.0
    if scored[0].exact:  # the article the question names (quote_article): all of it, as written
        return [s for s in scored if s.exact], 1.0
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


def quote_order(chosen: list[Scored], hits: list[Hit]) -> list[Scored]:
    """Quoted sentences grouped by passage, the passage of the best-supported sentence first (so [1]
    is the best evidence), and within a passage in the order the document has them."""
    first_seen: dict[int, int] = {}
    for s in chosen:  # chosen is best first
        first_seen.setdefault(s.hit_index, len(first_seen))

    def key(s: Scored):
        return first_seen[s.hit_index], max(hits[s.hit_index].text.find(s.sentence), 0)

    return sorted(chosen, key=key)


def render(chosen: list[Scored], number_of: dict[int, int]) -> str:
    """The quoted sentences, each run of sentences from one passage followed by that passage's [n]."""
    parts = []
    for i, s in enumerate(chosen):
        sent = s.sentence.rstrip()
        last_of_run = i + 1 == len(chosen) or chosen[i + 1].hit_index != s.hit_index
        parts.append(f"{sent}[{number_of[s.hit_index]}]" if last_of_run else sent)
    joiner = "" if any(ord(c) > 0x2E80 for c in "".join(p[:1] for p in parts)) else " "
    return joiner.join(parts)

