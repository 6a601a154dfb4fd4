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
"""

from __future__ import annotations

from ..document import BlockKind, Document
from ..keyinfo import Keyphraser, candidates, keyinfo_text, llm_keyphrases
from ..sentences import split_sentences
from ..settings import Settings, UnitLevel
from ..tokenize import count_tokens
from ..units import Level, Unit

MIN_SENTENCE_TOKENS = 6  # "是。" or "Yes." is no retrieval unit
SENTENCE_PHRASES = 3
ARTICLE_PHRASES = 48  # cap on the union of segment keyphrases


def keyphraser_for(settings: Settings) -> Keyphraser:
    from ..kb.knowledge_base import shared_embedder

    emb = shared_embedder(settings.embed_model, settings.device, settings.embed_batch_size)
    return Keyphraser(emb, top_n=settings.keyphrases, method=settings.keyphrase_candidates)


def build_units(doc: Document, segments: list[Unit], settings: Settings, *, generate=None,
                keyphraser: Keyphraser | None = None) -> list[Unit]:
    """Article, segment and sentence units of ``doc`` (levels per ``settings.unit_levels``)."""
    if not segments:
        return []
    levels = set(settings.unit_levels)
    phrases = _segment_phrases(segments, settings, generate, keyphraser)
    with_article = UnitLevel.ARTICLE in levels
    for seg, ph in zip(segments, phrases, strict=True):
        seg.keyinfo = keyinfo_text(seg.keyinfo, ph)  # seg.keyinfo holds the heading path so far
        seg.parent_ord = 0 if with_article else None
    units: list[Unit] = []
    if with_article:
        units.append(_article(doc, phrases))
    units.extend(segments)
    if UnitLevel.SENTENCE in levels:
        units.extend(_sentences(segments, settings))
    return units


def _segment_phrases(segments: list[Unit], settings: Settings, generate, keyphraser) -> list[list[str]]:
    texts = [s.text for s in segments]
    kp = keyphraser or (keyphraser_for(settings) if settings.keyphrases > 0 else None)
    phrases = kp.extract(texts) if kp else [[] for _ in texts]
    llm = llm_keyphrases(texts, generate, settings.keyphrases, phrases)
    if llm is not None:
        phrases = [list(dict.fromkeys([*a, *b])) for a, b in zip(llm, phrases, strict=True)]
    if settings.ner:
        from ..keyinfo.ner import entities

        phrases = [list(dict.fromkeys([*p, *entities(t)])) for p, t in zip(phrases, texts, strict=True)]
    return phrases


def _article(doc: Document, phrases: list[list[str]]) -> Unit:
    heads = [b.text for b in doc.blocks if b.kind == BlockKind.HEADING and b.level <= 2][:12]
    heading = " > ".join(dict.fromkeys(h for h in [doc.title, *heads] if h))
    union = list(dict.fromkeys(p for ph in phrases for p in ph))[:ARTICLE_PHRASES]
    first_page = next((b.page for b in doc.blocks if b.page is not None), None)
    return Unit(doc_id=doc.doc_id, text=doc.text, level=Level.ARTICLE, ord=0,
                keyinfo=keyinfo_text(heading, union), heading_path=[], page=first_page)


def _sentences(segments: list[Unit], settings: Settings) -> list[Unit]:
    out: list[Unit] = []
    for seg in segments:
        sents = [s for line in seg.text.split("\n") for s in split_sentences(line)]
        if len(sents) < 2:
            continue  # the segment is its own sentence: nothing finer to index
        heading = " > ".join(seg.heading_path)
        for s in sents:
            if count_tokens(s) < MIN_SENTENCE_TOKENS:
                continue
            ph = [w for w, _ in candidates(s, settings.keyphrase_candidates, SENTENCE_PHRASES)]
            out.append(Unit(doc_id=seg.doc_id, text=s, level=Level.SENTENCE, ord=len(out),
                            keyinfo=keyinfo_text(heading, ph), heading_path=list(seg.heading_path),
                            page=seg.page, parent_ord=seg.ord))
    return out
