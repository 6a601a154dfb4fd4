"""Units at three levels with their key info: article -> segments -> sentences.

- article (ord 0): the whole document text; key info = title and top headings + the union of its
  segments' keyphrases. It routes a "which document talks about X" query to the document.
- segment: the chunker's output; key info = heading path + keyphrases (statistical candidates
  re-ranked by embedding MMR; LLM phrases when a ``generate`` callable is given; entities if
  ``ner``). Segments are what the answerer reads.
- sentence: each sentence of a multi-sentence segment; key info = heading path + its own TF-IDF
  phrases (no embedding: sentences are many). A sentence hit is expanded to its segment.

Each unit's ``parent_ord`` names its parent (sentence -> segment, segment -> article); the KB
writer turns those into ``parent_id``.

One encoder pass per document (``_SegmentPass``): the segments are run through the embedding model
once, and everything else is read off that pass instead of re-encoding, which is what ingestion
used to spend 98% of its time on (bench/latency.py measures the cost against that floor):
- a segment's vector is the pass's own (identical to embedding the segment alone);
- a sentence's vector is the mean of its tokens' contextual states in the segment ("late
  chunking": the sentence is read with its context, so "它" knows what it refers to);
- a keyphrase candidate's vector for MMR is the mean state of its first occurrence's tokens;
- an article's vector is the token-weighted mean of its segments' vectors (the old article
  embedding read only the document's first 256 tokens).
It applies when the KB embeds ``text`` (the default) and the model pools all tokens; with
``embed: keyinfo | both``, an explicit ``keyphraser`` or a model without a fast tokenizer, units are
embedded one by one as before.
"""

from __future__ import annotations

import numpy as np

from docqa.document import BlockKind, Document
from docqa.settings import EmbedInput, Settings
from docqa.text.sentences import split_sentences
from docqa.text.tokenize import count_tokens
from docqa.units import Level, Unit
from ingest.keyinfo import Keyphraser, candidates, keyinfo_text, llm_keyphrases

MIN_SENTENCE_TOKENS = 6  # "是。" or "Yes." is no retrieval unit
SENTENCE_PHRASES = 3
ARTICLE_PHRASES = 48  # cap on the union of segment keyphrases


def keyphraser_for(settings: Settings) -> Keyphraser:
    return Keyphraser(_embedder(settings), top_n=settings.keyphrases, method=settings.keyphrase_candidates)


def _embedder(settings: Settings):
    from docqa.models.embedder import embedder_for

    return embedder_for(settings)


def build_units(doc: Document, segments: list[Unit], settings: Settings, *, generate=None,
                keyphraser: Keyphraser | None = None) -> list[Unit]:
    """Article, segment and sentence units of ``doc`` (levels per ``settings.unit_levels``)."""
    if not segments:
        return []
    levels = set(settings.unit_levels)
    sp = _SegmentPass.run(segments, settings) if keyphraser is None else None
    phrases = _segment_phrases(segments, settings, generate, keyphraser, sp)
    with_article = Level.ARTICLE in levels
    for seg, ph in zip(segments, phrases, strict=True):
        seg.keyinfo = keyinfo_text(seg.keyinfo, ph)  # seg.keyinfo holds the heading path so far
        seg.parent_ord = 0 if with_article else None
    units: list[Unit] = []
    if with_article:
        units.append(_article(doc, phrases, sp))
    units.extend(segments)
    if Level.SENTENCE in levels:
        units.extend(_sentences(segments, settings, sp))
    return units


class _SegmentPass:
    """What one encoder pass over a document's segments yields (see the module docstring). Token
    states are read as each batch comes back and then dropped, so a 3,000-segment document holds
    only vectors, never every token's state (~0.6 MB per segment) at once."""

    def __init__(self, n: int):
        self.tokens = [1] * n  # text tokens per segment (weights of the article vector)
        self.vectors: list = [None] * n
        self.candidates: list[list[tuple[str, float]]] = [[] for _ in range(n)]
        self.candidate_vecs: list = [None] * n
        self.sentence_vecs: list[dict[int, np.ndarray]] = [{} for _ in range(n)]

    @classmethod
    def run(cls, segments: list[Unit], settings: Settings) -> _SegmentPass | None:
        if EmbedInput(settings.embed) != EmbedInput.TEXT or not settings.segment_pass:
            return None
        emb = _embedder(settings)
        if not emb.supports_token_states():
            return None
        sp = cls(len(segments))
        sentences = Level.SENTENCE in set(settings.unit_levels)
        for i, st in emb.encode_docs_tokens([s.text for s in segments]):
            text = segments[i].text
            segments[i].vector = sp.vectors[i] = st.vector
            sp.tokens[i] = max(int((st.offsets[:, 0] >= 0).sum()), 1)
            if settings.keyphrases > 0:
                sp._read_candidates(i, text, st, settings)
            if sentences:
                sp.sentence_vecs[i] = {at: v for at, sent in _sentence_spans(text) if at >= 0
                                       and (v := st.pool(at, at + len(sent))) is not None}
        return sp

    def _read_candidates(self, i: int, text: str, st, settings: Settings) -> None:
        self.candidates[i] = c = candidates(text, settings.keyphrase_candidates)
        vecs = np.zeros((len(c), st.vector.shape[0]), dtype=np.float32)
        for j, (w, _) in enumerate(c):
            at = _find(text, w)
            v = st.pool(at, at + len(w)) if at >= 0 else None
            if v is not None:
                vecs[j] = v
        self.candidate_vecs[i] = vecs

    def phrases(self, kp: Keyphraser) -> list[list[str]]:
        return [kp.select(v, c, cv) if c else [] for v, c, cv in
                zip(self.vectors, self.candidates, self.candidate_vecs, strict=True)]

    def article_vector(self) -> np.ndarray:
        w = np.array(self.tokens, dtype=np.float32)
        v = (np.stack(self.vectors) * w[:, None]).sum(axis=0)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def _find(text: str, phrase: str) -> int:
    at = text.find(phrase)
    return at if at >= 0 else text.lower().find(phrase.lower())


def _segment_phrases(segments: list[Unit], settings: Settings, generate, keyphraser,
                     sp: _SegmentPass | None) -> list[list[str]]:
    texts = [s.text for s in segments]
    if settings.keyphrases <= 0:
        phrases: list[list[str]] = [[] for _ in texts]
    elif sp is not None:
        phrases = sp.phrases(Keyphraser(None, top_n=settings.keyphrases, method=settings.keyphrase_candidates))
    else:
        phrases = (keyphraser or keyphraser_for(settings)).extract(texts)
    llm = llm_keyphrases(texts, generate, settings.keyphrases, phrases)
    if llm is not None:
        phrases = [list(dict.fromkeys([*a, *b])) for a, b in zip(llm, phrases, strict=True)]
    if settings.ner:
        from ingest.keyinfo.ner import entities

        phrases = [list(dict.fromkeys([*p, *entities(t)])) for p, t in zip(phrases, texts, strict=True)]
    return phrases


def _article(doc: Document, phrases: list[list[str]], sp: _SegmentPass | None) -> Unit:
    heads = [b.text for b in doc.blocks if b.kind == BlockKind.HEADING and b.level <= 2][:12]
    heading = " > ".join(dict.fromkeys(h for h in [doc.title, *heads] if h))
    union = list(dict.fromkeys(p for ph in phrases for p in ph))[:ARTICLE_PHRASES]
    first_page = next((b.page for b in doc.blocks if b.page is not None), None)
    return Unit(doc_id=doc.doc_id, text=doc.text, level=Level.ARTICLE, ord=0,
                keyinfo=keyinfo_text(heading, union), heading_path=[], page=first_page,
                vector=sp.article_vector() if sp else None)


def _sentences(segments: list[Unit], settings: Settings, sp: _SegmentPass | None) -> list[Unit]:
    out: list[Unit] = []
    for k, seg in enumerate(segments):
        spans = _sentence_spans(seg.text)
        if len(spans) < 2:
            continue  # the segment is its own sentence: nothing finer to index
        heading = " > ".join(seg.heading_path)
        for start, s in spans:
            if count_tokens(s) < MIN_SENTENCE_TOKENS:
                continue
            line = seg.text.count("\n", 0, start) if start >= 0 else -1
            label = seg.line_labels[line] if 0 <= line < len(seg.line_labels) else seg.label
            ph = [w for w, _ in candidates(s, settings.keyphrase_candidates, SENTENCE_PHRASES)]
            vec = sp.sentence_vecs[k].get(start) if sp else None
            out.append(Unit(doc_id=seg.doc_id, text=s, level=Level.SENTENCE, ord=len(out),
                            keyinfo=keyinfo_text(heading, ph), heading_path=list(seg.heading_path),
                            page=seg.page, parent_ord=seg.ord, vector=vec, label=label or seg.label))
    return out


def _sentence_spans(text: str) -> list[tuple[int, str]]:
    """(start offset in ``text``, sentence) of every sentence of every line of ``text``."""
    out: list[tuple[int, str]] = []
    pos = 0
    for line in text.split("\n"):
        for s in split_sentences(line):
            at = text.find(s, pos)
            out.append((at if at >= 0 else -1, s))
            pos = at + len(s) if at >= 0 else pos
        pos = max(pos, 0)
    return out
