"""The answering pipeline, whichever backend writes the answer.

    question (+ history) -> history left-truncated to its token budget -> standalone query
      -> retrieve -> refusal check on the evidence (no LLM call when nothing supports an answer)
      -> extractive: quote the supporting sentences with [n]
      -> LLM: prompt with numbered passages -> draft -> keep only [n] of passages given
              (LLM down or failing: the fallback reply, ``fallback: true`` and the reason)
      -> compliance review (call site below) -> AnswerResult

``prepare`` does everything up to the LLM call; ``answer`` and ``answer_events`` finish it
whole or streamed. Both front ends (CLI, HTTP) go through here, so they cannot disagree.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from docqa.document import public_source
from docqa.filters import DocFilter
from docqa.kb import KnowledgeBase
from docqa.search import Hit, search
from docqa.settings import LLMFallback, Settings
from docqa.templates import prompts_for
from docqa.text.citations import cite
from docqa.text.language import has_han
from docqa.text.refusal import is_refusal
from docqa.text.tokenize import count_tokens
from service.answering.citations import CitationFilter, attribute, filter_citations
from service.answering.extractive import Scored, compose, quote_article, quote_order, render, score_sentences
from service.answering.history import condense, joined_query, truncate_history
from service.answering.reading import read_answer, reader_for
from service.answering.reading import render as render_reading
from service.answering.result import AnswerResult, refusal_message, stream_answer
from service.llm import LLM, GenParams, LLMError, kb_llm_settings, llm_for

log = logging.getLogger("docqa.answering")

NOTICE_ZH = "答案生成服务暂时不可用，以下是与问题最相关的原文，供参考。"
NOTICE_EN = "The answering model is unavailable right now; the most relevant passages are cited below."


@dataclass
class Prepared:
    """Everything known before the LLM is called."""

    kb: KnowledgeBase
    settings: Settings
    llm: LLM | None
    question: str  # as asked
    query: str  # the standalone query that was searched
    hits: list[Hit]
    chosen: list[Scored]  # evidence sentences that support an answer (empty: refuse)
    best: float
    params: GenParams
    stage: str | None = None
    request_id: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. why condensation fell back
    reading: object | None = None  # the reader's answer (service/answering/reading.py ReadAnswer), if it read
    basis: str = "evidence"  # what decided: reader | evidence | rerank | article
    llm_seconds: float = 0.0  # time spent inside LLM calls (bench/service_overhead.py)
    retrieve_seconds: float = 0.0  # search and the evidence scores

    @property
    def threshold(self) -> float | None:
        """The threshold ``best`` was held against for this basis (None: a named article needs none)."""
        s = self.settings
        return {"reader": s.reader_threshold, "rerank": s.rerank_refusal_threshold,
                "evidence": s.refusal_threshold}.get(self.basis)

    @property
    def passages(self) -> list[Hit]:
        """The hits given to the LLM: best first, packed into ``context_token_budget``."""
        out, used = [], 0
        for h in self.hits:
            cost = count_tokens(h.text) + 8
            if out and used + cost > self.settings.context_token_budget:
                break
            out.append(h)
            used += cost
        return out


def prepare(kb: KnowledgeBase, question: str, history: list[dict] | None = None, *, k: int | None = None,
            params: dict | None = None, stage: str | None = None, request_id: str | None = None,
            cache: dict | None = None, where: DocFilter | None = None) -> Prepared:
    """History, standalone query, retrieval and the evidence check (see the module docstring).

    ``cache``: retrieval and sentence scores by (query, k), reused across calls (``docqa eval``
    sweeps of settings that do not change retrieval). ``where``: groups and metadata filters, inside
    retrieval, so nothing a caller may not read reaches evidence, prompt, citations or the audit log."""
    s = kb_llm_settings(kb.settings, kb.name)
    llm = llm_for(s)
    gen = GenParams.from_settings(s).override(**(params or {}))
    turns = truncate_history(history, s.history_token_budget)
    prep = Prepared(kb, s, llm, question, question, [], [], 0.0, gen, stage, request_id)
    prep.query = _standalone(prep, turns)
    key = (prep.query, k or s.answer_k, where)
    t0 = time.perf_counter()
    reader, reader_error = reader_for(s)
    if reader_error:
        prep.notes.append(f"answered without the reader (quoting the best-supported sentences): {reader_error}")
    if cache is not None and key in cache:
        prep.hits, scored, reading = cache[key]
    else:
        prep.hits = search(kb, prep.query, k or s.answer_k, where=where)
        scored, reading = quote_article(prep.hits), None
        if not scored and reader is not None:
            reading = read_answer(reader, prep.query, prep.hits, s.reader_windows, s.reader_window_tokens,
                                  ranked=s.reader_rank, first=s.reader_windows_first, enough=s.reader_threshold)
        elif not scored:
            scored = score_sentences(prep.query, prep.hits, kb.embedder, kb.evidence)
        if cache is not None:
            cache[key] = (prep.hits, scored, reading)
    if s.rerank_model and kb.reranker_error:
        prep.notes.append(f"answered without reranking: {kb.reranker_error}")
    reranked = [h.rerank_score for h in prep.hits if h.rerank_score is not None]
    if scored and scored[0].exact:
        prep.chosen, prep.best = compose(scored, s.refusal_threshold)
        prep.basis = "article"
    elif reading is not None:  # the reader decides: P(answer) of the window most likely to hold one
        ans, prep.best = reading
        prep.basis = "reader"
        if ans is not None and prep.best >= s.reader_threshold:
            prep.reading = ans
            prep.chosen = [Scored(ans.hit_index, ans.sentence, prep.best)]
    elif reranked:
        # a reranked KB refuses on the cross-encoder's best score, then quotes the best evidence
        prep.basis = "rerank"
        if max(reranked) < s.rerank_refusal_threshold:
            prep.chosen, prep.best = [], max(reranked)
        else:
            prep.chosen, prep.best = compose(scored, 0.0)[0], max(reranked)
    else:
        prep.chosen, prep.best = compose(scored, s.refusal_threshold)
    prep.retrieve_seconds = time.perf_counter() - t0
    return prep


def _standalone(prep: Prepared, turns: list[dict]) -> str:
    if not turns:
        return prep.question
    if prep.llm is not None:
        t0 = time.perf_counter()
        try:
            return condense(prep.llm, prompts_for(prep.settings.prompts_dir), prep.question, turns, prep.params)
        except LLMError as e:
            prep.notes.append(f"condensation failed ({e}); joined with the previous turn")
            log.warning("follow-up condensation failed, joining turns instead: %s", e)
        finally:
            prep.llm_seconds += time.perf_counter() - t0
    return joined_query(prep.question, turns)


def answer(prep: Prepared) -> AnswerResult:
    """The whole answer (no streaming)."""
    early = _without_llm(prep)
    if early is not None:
        return compliance_review(prep, early)
    t0 = time.perf_counter()
    try:
        text = prep.llm.generate(_messages(prep), prep.params)
        if not text.strip():
            raise LLMError("the LLM returned an empty answer")
    except LLMError as e:
        return compliance_review(prep, fallback_result(prep, e))
    finally:
        prep.llm_seconds += time.perf_counter() - t0
    clean, cited = filter_citations(text, len(prep.passages))
    return compliance_review(prep, llm_result(prep, clean, cited))


def answer_events(prep: Prepared) -> Iterator[str | AnswerResult]:
    """Text deltas as the LLM writes them, then the final ``AnswerResult`` (always last).

    The final result is authoritative: a client that shows deltas replaces them with its ``answer``
    (it differs when the LLM broke off mid-answer and the fallback reply took over, when the compliance
    filter stopped the answer at a sentence that failed, or a citation was attributed at the end).
    Under the compliance filter (or redaction) each sentence is sent once it has passed the checks that
    can be made on it (service/compliance/stream.py); ``snap`` mode holds the whole answer for its verdict.
    An answer made without the LLM (refusal, extractive) is reviewed whole and sent by sentence."""
    from service.compliance import StreamReview, streams_by_sentence

    early = _without_llm(prep)
    filt = review_filter(prep)
    if early is not None or (filt is not None and not streams_by_sentence(filt)):
        result = compliance_review(prep, early) if early is not None else answer(prep)
        yield from stream_answer(result)
        yield result
        return
    reviewer = StreamReview(filt, prep.question, llm_evidence(prep), prep.stage) if filt is not None else None
    cites, sent, draft = CitationFilter(len(prep.passages)), [], []
    chunks = None
    t0 = time.perf_counter()
    try:
        chunks = prep.llm.stream(_messages(prep), prep.params)
        for delta in chunks:
            clean = cites.feed(delta)
            draft.append(clean)
            out = reviewer.feed(clean) if reviewer is not None else clean
            if out:
                sent.append(out)
                yield out
            if reviewer is not None and reviewer.failed is not None:
                break  # the filter stopped the answer: stop the LLM too (close() below)
        else:
            tail = cites.flush()
            draft.append(tail)
            out = reviewer.feed(tail) + reviewer.finish() if reviewer is not None else tail
            if out:
                sent.append(out)
                yield out
        if not "".join(draft).strip():
            raise LLMError("the LLM returned an empty answer")
    except LLMError as e:
        result = fallback_result(prep, e)
        if reviewer is not None:
            result = compliance_review(prep, result)
        if not "".join(sent).strip():
            yield from stream_answer(result)
        yield result
        return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        prep.llm_seconds += time.perf_counter() - t0 - (reviewer.seconds if reviewer is not None else 0.0)
    streamed = "".join(sent)
    result = llm_result(prep, streamed if reviewer is not None else "".join(draft), cites.cited)
    if reviewer is not None:
        result = streamed_review(prep, result, reviewer)
    streamed = streamed.rstrip()
    if streamed and result.answer.startswith(streamed):
        if len(result.answer) > len(streamed):
            yield result.answer[len(streamed):]
    elif result.fallback or not streamed:
        yield from stream_answer(result)  # after what was sent before the verdict: ``answer`` replaces both
    yield result


def _without_llm(prep: Prepared) -> AnswerResult | None:
    """The refusal, or the extractive answer, when no LLM call is needed."""
    if not prep.chosen:
        why = "no retrieved passage supports an answer" if prep.hits else "the knowledge base returned no passage"
        if prep.basis == "reader" and prep.hits:
            why = (f"the reader found no answer in the passages (P(answer) {prep.best:.2f} < reader_threshold "
                   f"{prep.settings.reader_threshold:.2f})")
        return AnswerResult(answer=refusal_message(prep.question), refused=True, query=prep.query,
                            evidence_score=prep.best, reason=why, basis=prep.basis)
    if prep.llm is None:
        return extractive_result(prep)
    return None


def _messages(prep: Prepared) -> list[dict]:
    question = prep.question if prep.query == prep.question else prep.query
    from docqa.screening import unsafe_as_evidence

    passages = [{"n": n, "title": h.title, "label": h.label, "text": h.text, "flagged": unsafe_as_evidence(h.text)}
                for n, h in enumerate(prep.passages, start=1)]
    return prompts_for(prep.settings.prompts_dir).qa_messages(question, passages)


def citation(n: int, h: Hit) -> dict:
    return {"n": n, "doc_id": h.doc_id, "source": public_source(h.source), "title": h.title, "text": h.text,
            "unit_id": h.unit_id, "page": h.page, "heading_path": h.heading_path, "label": h.label}


def extractive_result(prep: Prepared, **extra) -> AnswerResult:
    """Quote the chosen evidence sentences (``quote_order``), each run with its [n] (numbered as quoted)."""
    if prep.reading is not None:
        ans, hit = prep.reading, prep.hits[prep.reading.hit_index]
        return AnswerResult(answer=render_reading(ans, hit, 1, prep.question), citations=[citation(1, hit)],
                            query=prep.query, evidence_score=prep.best, answer_span=ans.span_field(1),
                            basis=prep.basis, quotes=ans.quotes(), **extra)
    chosen = quote_order(prep.chosen, prep.hits)
    used = list(dict.fromkeys(s.hit_index for s in chosen))
    number_of = {hi: n for n, hi in enumerate(used, start=1)}
    return AnswerResult(answer=render(chosen, number_of),
                        citations=[citation(number_of[i], prep.hits[i]) for i in used], refused=False,
                        query=prep.query, evidence_score=prep.best, basis=prep.basis,
                        quotes=[s.sentence for s in chosen], **extra)


def fallback_result(prep: Prepared, err: LLMError) -> AnswerResult:
    """What the user gets when the LLM fails (``llm_fallback``): still an answer, marked as such."""
    reason = f"LLM unavailable: {err}"
    log.warning("answering with the fallback reply: %s", reason)
    if prep.settings.llm_fallback == LLMFallback.EXTRACTIVE:
        return extractive_result(prep, fallback=True, reason=reason)
    top = prep.passages[:3]
    notice = NOTICE_ZH if has_han(prep.question) else NOTICE_EN
    return AnswerResult(answer=notice, citations=[citation(n, h) for n, h in enumerate(top, start=1)],
                        query=prep.query, evidence_score=prep.best, fallback=True, reason=reason,
                        fixed_text=True)


def llm_result(prep: Prepared, text: str, cited: list[int]) -> AnswerResult:
    """The LLM's (citation-filtered) draft as a result: refusal detected, citations of passages given."""
    passages = prep.passages
    text = text.strip()
    if not cited and is_refusal(text):
        return AnswerResult(answer=refusal_message(prep.question), refused=True, query=prep.query,
                            evidence_score=prep.best, reason="the LLM found no answer in the passages")
    if not cited:
        n = attribute(text, passages)
        if n is not None:
            cited = [n]
            text = cite(text, n)
    return AnswerResult(answer=text, citations=[citation(n, passages[n - 1]) for n in sorted(cited)],
                        query=prep.query, evidence_score=prep.best, basis=prep.basis)


# --- compliance filter call site (service/compliance, per KB off | guard | snap) ---------------------
def review_filter(prep: Prepared):
    """The KB's compliance filter when its answers are reviewed before a user sees them (the filter, or
    personal-data redaction), else None."""
    from service.compliance import build_filter, filter_enabled

    return build_filter(prep.settings, prep.kb.name, prep.kb.embedder) if filter_enabled(prep.kb) else None


def streamed_review(prep: Prepared, result: AnswerResult, reviewer) -> AnswerResult:
    """``compliance_review`` for an answer reviewed sentence by sentence as it streamed."""
    from service.compliance import review_streamed

    final = review_streamed(prep.kb, prep.question, result, reviewer, stage=prep.stage, request_id=prep.request_id)
    final.timings = {"retrieve": prep.retrieve_seconds, "generate": prep.llm_seconds, "filter": reviewer.seconds}
    final.warnings = list(prep.notes)
    final.threshold = prep.threshold
    return final


def compliance_review(prep: Prepared, result: AnswerResult) -> AnswerResult:
    """CALL SITE of the compliance filter: every answer (LLM draft, extractive, refusal, fallback)
    passes here exactly once; the verdict is appended to the KB's audit log."""
    from service.compliance import review

    t0 = time.perf_counter()
    final = review(prep.kb, prep.question, result, stage=prep.stage, request_id=prep.request_id,
                   evidence=passage_texts(prep, result))
    final.timings = {"retrieve": prep.retrieve_seconds, "generate": prep.llm_seconds,
                     "filter": time.perf_counter() - t0}
    final.warnings = list(prep.notes)
    final.threshold = prep.threshold
    return final


def passage_texts(prep: Prepared, result: AnswerResult) -> dict[int, str]:
    """Every passage the answer's [n] may point at, by number (the filter's ``evidence``): the
    prompt's passages for an LLM draft, the quoted passages for an extractive or fallback answer."""
    if prep.llm is None or result.fallback or result.refused:
        return {int(c["n"]): as_evidence(c["text"]) for c in result.citations}
    return llm_evidence(prep)


def llm_evidence(prep: Prepared) -> dict[int, str]:
    """The prompt's passages by number: what an LLM draft is checked against."""
    return {n: as_evidence(h.text) for n, h in enumerate(prep.passages, start=1)}


def as_evidence(text: str) -> str:
    """A passage as the filter checks answers against it: a table also as its rows read with their
    header ("名称：...；位定义：19-23"), which is how an answer quotes a row (``evidence_sentences``)."""
    from docqa.text.tables import is_markdown_table, row_sentences

    return text + "\n" + "\n".join(row_sentences(text)) if is_markdown_table(text) else text
