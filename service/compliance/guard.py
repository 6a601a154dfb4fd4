"""Guard: is every sentence of a draft answer backed by the passages the answerer was given?

A draft sentence is *supported* when
- its text (citation markers and whitespace removed) occurs verbatim in a given passage — a
  quote; this costs no model call, so extractive answers pass at no cost; or
- some sentence of the given passages scores at least ``threshold`` with it, the score being
  half embedding cosine, half lexical overlap (``pair_scores``; threshold calibrated by
  bench/calibrate_compliance.py; support in *any* given passage counts, because small LLMs cite
  loosely and a mis-numbered citation is not a made-up fact).

A sentence that is not a quote must also state only facts its evidence states (docqa/text/facts.py):
its numbers, dates and amounts must appear in the evidence sentences that ground it (the best-scoring
one and any scoring within ``FACT_WINDOW_MARGIN`` of it), its named entities there or in their
neighbours. A changed number is ungrounded however similar the sentence is; a number taken from
another clause of the same passage ("六个月" where the rule says "二个月") is caught too.

Independently, every citation ``[n]`` (also ``[1,2]`` and ``【n】``) must name a passage that was
given; a sentence citing [7] when five passages were given is unsupported whatever it says.
Sentences with no content of their own ("如下：", a lone "[1]") are neither checked nor counted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from docqa.text.citations import cited_numbers, leading_markers, strip_citations
from docqa.text.facts import misplaced_terms, missing_facts
from docqa.text.language import HAN, has_han
from docqa.text.sentences import split_sentences

_NON_WORD = re.compile(r"[\W_]+")
_WS = re.compile(r"\s+")
MIN_CONTENT_CHARS = 2  # a sentence with fewer letters/digits/CJK characters than this is not checked


@dataclass
class SentenceCheck:
    """One draft sentence: its text as drafted, its best evidence similarity and why it fails."""

    text: str
    checked: bool = True
    verbatim: bool = False
    score: float = 0.0
    bad_citations: list[int] = field(default_factory=list)
    missing_facts: list[str] = field(default_factory=list)
    verified: str = ""  # the verifier's word (docqa/reader/grounding.py): confirmed | contradicted | unknown | none
    # | "" (not run)
    contradiction: str = ""  # what the passages say instead, when contradicted
    p_stated: float | None = None  # the trained verifier's P(the passages state it)
    supported: bool = True


@dataclass
class GuardReport:
    sentences: list[SentenceCheck]
    threshold: float

    @property
    def checked(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if s.checked]

    @property
    def unsupported(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if not s.supported]

    @property
    def grounded(self) -> bool:
        return bool(self.checked) and not self.unsupported

    def kept_text(self) -> str:
        """The draft without its unsupported sentences (for ``guard_action: drop``)."""
        kept = [s.text for s in self.sentences if s.supported]
        if not any(s.checked for s in self.sentences if s.supported):
            return ""
        joiner = "" if has_han("".join(kept)[:50]) else " "
        return joiner.join(kept).strip()

    def describe(self) -> str:
        bad = self.unsupported
        if not self.checked:
            return "the draft has no sentence to check"
        cites = sorted({n for s in bad for n in s.bad_citations})
        if cites:
            return f"citation(s) {cites} point at no given passage"
        contra = [s for s in bad if s.contradiction]
        if contra:
            return (f"{len(bad)} of {len(self.checked)} sentence(s) lack evidence: {contra[0].text[:60]!r} is "
                    f"contradicted: {contra[0].contradiction}")
        facts = [s for s in bad if s.missing_facts]
        if facts:
            return (f"{len(bad)} of {len(self.checked)} sentence(s) lack evidence: {facts[0].text[:60]!r} states "
                    f"{', '.join(facts[0].missing_facts[:3])}, which its evidence does not")
        worst = min(bad, key=lambda s: s.score) if bad else None
        if worst is None:
            return f"all {len(self.checked)} sentence(s) grounded"
        return (f"{len(bad)} of {len(self.checked)} sentence(s) lack evidence (lowest similarity "
                f"{worst.score:.3f} < {self.threshold:.3f}: {worst.text[:60]!r})")


def _compact(text: str) -> str:
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def draft_sentences(answer: str) -> list[str]:
    """Sentences of a draft, each keeping the citations that follow its full stop ("A。[1]B" -> "A。[1]")."""
    out: list[str] = []
    for line in answer.split("\n"):
        for s in split_sentences(line):
            lead = leading_markers(s)
            if lead and out:
                out[-1] += lead.strip()
                s = s[len(lead):].strip()
            if s:
                out.append(s)
    return out


def evidence_sentences(passages: Mapping[int, str]) -> list[str]:
    return [s for text in passages.values() for line in text.split("\n") for s in split_sentences(line)]


def as_passages(evidence: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
    """Evidence keyed by citation number; a sequence is numbered from 1 (evidence[0] is [1])."""
    if isinstance(evidence, Mapping):
        return {int(k): str(v) for k, v in evidence.items()}
    return {i: str(t) for i, t in enumerate(evidence, start=1)}


def check_grounding(answer: str, evidence: Mapping[int, str] | Sequence[str], embedder,
                    threshold: float, verifier=None) -> GuardReport:
    """Check every sentence of ``answer`` against ``evidence`` (see the module docstring); ``verifier``
    (docqa/reader/grounding.py ``ClaimVerifier``) also reads each sentence that is not a quote with its evidence."""
    passages = as_passages(evidence)
    compact_passages = [_compact(t) for t in passages.values()]
    checks: list[SentenceCheck] = []
    for s in draft_sentences(answer):
        body = _compact(strip_citations(s))
        if len(body) < MIN_CONTENT_CHARS:
            checks.append(SentenceCheck(s, checked=False))
            continue
        bad = [n for n in cited_numbers(s) if n not in passages]
        verbatim = any(body in p for p in compact_passages)
        checks.append(SentenceCheck(s, verbatim=verbatim, score=1.0 if verbatim else 0.0, bad_citations=bad))
    todo = [c for c in checks if c.checked and not c.verbatim]
    ev = evidence_sentences(passages)
    everything = "\n".join(passages.values())
    if todo and ev:
        pair = pair_scores([strip_citations(c.text) for c in todo], ev, embedder)
        for c, row in zip(todo, pair, strict=True):
            c.score = float(row.max())
            core, wide = fact_window(ev, row)
            body = strip_citations(c.text)
            c.missing_facts = missing_facts(body, core, wide) + misplaced_terms(body, wide, everything)
            if verifier is not None:
                v = verifier.check(body, list(passages.values()))
                c.verified, c.p_stated = v.state, v.p
                c.contradiction = v.detail if v.state == "contradicted" else ""
    for c in checks:
        if c.checked:
            by_rules = not c.missing_facts and c.score >= threshold
            c.supported = (not c.bad_citations and not c.contradiction
                           and (c.verbatim or c.verified == "confirmed" or by_rules))
    return GuardReport(checks, threshold)


FACT_WINDOW_MARGIN = 0.1  # evidence sentences this close to the best one also ground a sentence's facts


def fact_window(evidence: list[str], scores: np.ndarray) -> tuple[str, str]:
    """The evidence that grounds one draft sentence's facts: (core, wide). Core: the best-scoring
    evidence sentence and every one within ``FACT_WINDOW_MARGIN`` of it (an answer may join two
    sentences' facts); numbers must be there. Wide: core plus each one's neighbours, where a named
    subject may be ("张三 ... 他于2019年入职")."""
    best = float(scores.max())
    core = [int(i) for i in np.flatnonzero(scores >= best - FACT_WINDOW_MARGIN)]
    wide = sorted({j for i in core for j in (i - 1, i, i + 1) if 0 <= j < len(evidence)})
    return "\n".join(evidence[i] for i in core), "\n".join(evidence[i] for i in wide)


DENSE_SHARE = 0.5  # weight of the cosine in the grounding score; the rest is lexical overlap


def pair_scores(sentences: list[str], evidence: list[str], embedder) -> np.ndarray:
    """(sentences x evidence) scores ``DENSE_SHARE`` x cosine + (1 - ``DENSE_SHARE``) x ``overlap``.

    Why not cosine alone: with a general embedder (all-MiniLM-L6-v2) any two Chinese sentences
    sit near cosine 0.75, so cosine cannot tell "起购金额为一万元" from an unrelated claim; the
    overlap term can. bench/calibrate_compliance.py measures all three (cosine, overlap, this)."""
    vecs = embedder.encode_docs(sentences + evidence)
    a, e = vecs[: len(sentences)], vecs[len(sentences):]
    lex = np.array([[overlap(s, t) for t in evidence] for s in sentences], dtype=np.float32)
    return DENSE_SHARE * (a @ e.T) + (1 - DENSE_SHARE) * lex


def _grams(text: str) -> set[str]:
    low = unicodedata.normalize("NFKC", text).casefold()
    cjk = "".join(HAN.findall(low))
    return {cjk[i: i + 2] for i in range(len(cjk) - 1)} | set(re.findall(r"[a-z0-9]{2,}", low))


def overlap(sentence: str, evidence: str) -> float:
    """Share of the sentence's Chinese character bigrams and Latin words/numbers found in ``evidence``."""
    g = _grams(sentence)
    return len(g & _grams(evidence)) / len(g) if g else 0.0
