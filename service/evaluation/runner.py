"""Run an eval set through the answering code every front end uses, one row at a time.

Each question goes through ``screen_question`` -> ``prepare`` (history, query, retrieval, evidence)
-> ``answer`` (LLM or extractive, then the compliance filter): exactly what ``/v1/chat`` runs. A
separate ``search`` at depth 20 gives the ranks for hit@1/5/20 and MRR@10 (answering itself looks
at ``answer_k`` passages). Rows are appended to ``rows.jsonl`` and flushed as they finish, so an
interrupted run keeps them and ``resume`` skips them.

Sweeps (``--set key=v1,v2``) run the set once per value on a copy of the KB view with that setting.
Retrieval and sentence scores are cached between values when the key cannot change them (the
refusal threshold, guard and snap settings, the LLM's): only the answer step runs again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from docqa.errors import UserError
from docqa.search import search
from service.evaluation import metrics as M
from service.evaluation.dataset import EvalRow, EvalSet

RETRIEVAL_DEPTH = 20
# keys whose value cannot change retrieval or the sentence scores: sweeps over them reuse both
ANSWER_ONLY_KEYS = {"refusal_threshold", "reader_threshold", "guard_threshold", "guard_action", "snap_threshold",
                    "compliance", "redact", "context_token_budget", "history_token_budget"}


def answer_only(key: str) -> bool:
    return key in ANSWER_ONLY_KEYS or key.startswith("llm_")


def with_setting(kb, key: str, value):
    """A view of the KB's generation whose settings have ``key`` = ``value`` (validated), with its own
    lock, caches and models (``KnowledgeBase.with_settings``)."""
    if key not in type(kb.settings).model_fields:
        raise UserError(f"unknown setting {key!r}")
    return kb.with_settings({key: value})


def evaluate_row(kb, row: EvalRow, *, cache: dict | None = None, retrieval_cache: dict | None = None,
                 run_id: str = "eval", groups=None) -> dict:
    """One question through the answering pipeline; the per-question record of ``rows.jsonl``. The
    audit log records its verdict under request id ``eval:<run>:<row id>``. The row's ``filters`` and
    ``groups`` (those of the caller that started the run; None: every document) apply inside retrieval."""
    from docqa.filters import doc_filter

    where = doc_filter(groups, row.filters or None)
    rid = f"eval:{run_id}:{row.id}"
    from service.answering.pipeline import answer, prepare
    from service.compliance import screen_question

    t0 = time.perf_counter()
    retrieved = retrieval_cache.get(row.id) if retrieval_cache is not None else None
    if retrieved is None:
        retrieved = [{"doc_id": h.doc_id, "source": h.source, "title": h.title, "score": round(h.score, 5),
                      "text": h.text} for h in search(kb, _query(row), RETRIEVAL_DEPTH, where=where)]
        if retrieval_cache is not None:
            retrieval_cache[row.id] = retrieved
    t_search = time.perf_counter()
    timings: dict[str, float] = {"search_ms": (t_search - t0) * 1000}
    early = screen_question(kb, row.question, request_id=rid)
    if early is not None:
        result, best, llm_s = early, 0.0, 0.0
        timings.update(retrieval_ms=0.0, answer_ms=0.0)
    else:
        t1 = time.perf_counter()
        prep = prepare(kb, row.question, row.history, cache=cache, request_id=rid, where=where)
        t2 = time.perf_counter()
        result = answer(prep)
        t3 = time.perf_counter()
        best, llm_s = prep.best, prep.llm_seconds
        timings.update(retrieval_ms=(t2 - t1) * 1000, answer_ms=(t3 - t2) * 1000)
    timings["llm_ms"] = llm_s * 1000
    timings["compliance_ms"] = max(0.0, timings["answer_ms"] - timings["llm_ms"])
    timings["total_ms"] = (time.perf_counter() - t0) * 1000 - timings["search_ms"]
    return record(row, result, retrieved, best, timings)


def _query(row: EvalRow) -> str:
    from service.answering.history import joined_query

    return joined_query(row.question, row.history) if row.history else row.question


def record(row: EvalRow, result, retrieved: list[dict], best: float, timings: dict) -> dict:
    passages = {int(c["n"]): str(c.get("text", "")) for c in result.citations}
    kind = result.outcome
    declined = kind in ("refused", "fallback")
    rank = M.first_rank(retrieved, doc_ids=row.doc_ids, sources=row.sources, answers=row.answers)
    precise, cited = M.citation_counts(result.answer, passages) if not declined else (0, 0)
    has_gold = bool(row.answers) and not row.unanswerable
    cite_hit = None
    if has_gold and not declined:
        cite_hit = any(M.contains_any(p, row.answers) for p in passages.values())
    return {
        **row.to_dict(), "line": row.line,
        "answer": result.answer, "outcome": kind, "declined": declined, "reason": result.reason,
        "evidence_score": round(float(best), 5),
        "citations": [{"n": c["n"], "doc_id": c.get("doc_id"), "unit_id": c.get("unit_id"),
                       "text": str(c.get("text", ""))[:400]} for c in result.citations],
        "retrieved": [{**h, "text": h["text"][:300]} for h in retrieved],
        "rank": None if row.unanswerable else rank,
        "answer_contains": M.contains_any(result.answer, row.answers) if has_gold else None,
        "basis": getattr(result, "basis", "evidence"),
        "short_answer": (result.answer_span or {}).get("text") if getattr(result, "answer_span", None) else None,
        **_short_scores(result, row, has_gold, declined),
        "citations_precise": precise, "citations_total": cited, "citation_hit": cite_hit,
        "numbers_exact": None if declined else M.numbers_exact(result.answer, passages.values()),
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


def _short_scores(result, row: EvalRow, has_gold: bool, declined: bool) -> dict:
    """EM / F1 of the reader's short answer against the gold answers (None without a reader span or gold;
    a refused answerable question scores 0)."""
    from docqa.reader.metrics import exact, f1

    span = getattr(result, "answer_span", None)
    if not has_gold or (span is None and not declined):
        return {"short_em": None, "short_f1": None}
    text = "" if declined or span is None else span.get("text", "")
    golds = list(row.answers)
    return {"short_em": exact(text, golds), "short_f1": f1(text, golds)}


def run_eval(kb, evalset: EvalSet, rows_path: Path, *, resume: bool = False, progress: bool = True,
             cache: dict | None = None, retrieval_cache: dict | None = None,
             on_row: Callable[[int, int], None] | None = None, run_id: str = "eval", groups=None) -> list[dict]:
    """Every row of ``evalset`` (rows already in ``rows_path`` kept when ``resume``); returns all records."""
    rows_path = Path(rows_path)
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    if resume and rows_path.is_file():
        for line in rows_path.read_text(encoding="utf-8").split("\n"):
            try:
                rec = json.loads(line)
                done[str(rec["id"])] = rec
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by the interruption: that row runs again
        rows_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()),
                             encoding="utf-8")
    elif rows_path.exists():
        rows_path.unlink()
    todo = [r for r in evalset.rows if r.id not in done]
    out = [done[r.id] for r in evalset.rows if r.id in done]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(evalset.rows), initial=len(out), unit="q", desc="eval", leave=False)
    with open(rows_path, "a", encoding="utf-8") as f:
        for row in todo:
            rec = evaluate_row(kb, row, cache=cache, retrieval_cache=retrieval_cache, run_id=run_id, groups=groups)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            out.append(rec)
            if bar is not None:
                bar.update(1)
            if on_row is not None:
                on_row(len(out), len(evalset.rows))
    if bar is not None:
        bar.close()
    order = {r.id: i for i, r in enumerate(evalset.rows)}
    return sorted(out, key=lambda r: order.get(str(r["id"]), 0))


def summarize(records: list[dict], threshold: float | None = None) -> dict:
    """The metrics of a run (see ``metrics.MAIN_METRICS`` for the ones a baseline gates on)."""
    answerable = [r for r in records if not r["unanswerable"]]
    unanswerable = [r for r in records if r["unanswerable"]]
    ranks = [r["rank"] for r in answerable if r.get("doc_ids") or r.get("sources") or r.get("answers")]
    precise = sum(r["citations_precise"] for r in records)
    cited = sum(r["citations_total"] for r in records)
    out: dict = {
        "questions": len(records), "answerable": len(answerable), "unanswerable": len(unanswerable),
        **{f"hit@{k}": (M.hit_at(ranks, k) if ranks else None) for k in (1, 5, 20)},
        "mrr@10": M.mrr_at(ranks, 10) if ranks else None,
        "answer_contains": M.share(r["answer_contains"] for r in answerable),
        "citation_precision": precise / cited if cited else None,
        "citation_recall": M.share(r["citation_hit"] if r["citation_hit"] is not None else
                                   (False if r["answer_contains"] is not None else None) for r in answerable),
        "refusal_accuracy": M.share(r["declined"] for r in unanswerable),
        "answerability_balanced_accuracy": _balanced(answerable, unanswerable),
        "short_em": _avg(r.get("short_em") for r in answerable if r.get("basis") == "reader"),
        "short_f1": _avg(r.get("short_f1") for r in answerable if r.get("basis") == "reader"),
        "false_refusal_rate": M.share(r["declined"] for r in answerable),
        "numbers_exact": M.share(r["numbers_exact"] for r in records),
        "outcomes": {k: sum(1 for r in records if r["outcome"] == k) / max(1, len(records))
                     for k in ("answered", "refused", "fallback", "snapped", "dropped", "redacted")},
        "latency_ms": {stage: {"p50": M.percentile(v, 50), "p95": M.percentile(v, 95)}
                       for stage in ("retrieval_ms", "answer_ms", "llm_ms", "compliance_ms", "total_ms")
                       for v in [[r["timings"][stage] for r in records if stage in r["timings"]]]},
    }
    if threshold is not None:
        out["refusal_threshold"] = threshold
    return out


def _threshold(kb, records: list[dict]) -> float:
    """The threshold the run's refusals were decided by: the reader's when it decided, else the evidence one."""
    if any(r.get("basis") == "reader" for r in records):
        return kb.settings.reader_threshold
    return kb.settings.refusal_threshold


def _avg(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _balanced(answerable: list[dict], unanswerable: list[dict]) -> float | None:
    """Mean of answered-when-answerable and refused-when-not (None without both kinds)."""
    from docqa.reader.metrics import balanced_accuracy

    truth = [True] * len(answerable) + [False] * len(unanswerable)
    said = [not r["declined"] for r in answerable] + [not r["declined"] for r in unanswerable]
    return balanced_accuracy(truth, said)


def parse_sweep(spec: str | None) -> tuple[str, list] | None:
    """``"refusal_threshold=0.6,0.7,0.8"`` -> ("refusal_threshold", [0.6, 0.7, 0.8])."""
    if not spec:
        return None
    key, sep, values = spec.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise UserError(f"--set expects KEY=V1,V2,... (got {spec!r})")
    out = []
    for v in values.split(","):
        try:
            out.append(int(v) if v.strip().lstrip("-").isdigit() else float(v))
        except ValueError:
            raise UserError(f"--set {key}: {v!r} is not a number") from None
    return key.strip(), out


def evaluate(kb, evalset: EvalSet, out: Path, *, baseline: dict | None = None, tolerance: float = 0.01,
             sweep: tuple[str, list] | None = None, resume: bool = False, progress: bool = True,
             on_row: Callable[[int, int], None] | None = None, run_id: str = "eval", groups=None) -> dict:
    """Run, summarise and write the report (the one path of ``docqa eval run`` and the HTTP job).
    ``groups``: the document groups of the caller (None: all), so an eval shows no more than a chat would.
    Returns {"metrics", "regressions", "report", "notes"}."""
    from service.evaluation.report import write_report

    out = Path(out)
    notes = _set_notes(kb, evalset)
    retrieval_cache: dict = {}
    records = run_eval(kb, evalset, out / "rows.jsonl", resume=resume, progress=progress, on_row=on_row,
                       retrieval_cache=retrieval_cache, run_id=run_id, groups=groups)
    m = summarize(records, _threshold(kb, records))
    sweep_out = None
    if sweep:
        key, values = sweep
        cache = {} if answer_only(key) else None
        per_value = []
        for i, v in enumerate(values):
            view = with_setting(kb, key, v)
            recs = run_eval(view, evalset, out / f"sweep-{key}-{i}.jsonl", progress=progress, cache=cache,
                            retrieval_cache=retrieval_cache if answer_only(key) else None, run_id=f"{run_id}:{v}",
                            groups=groups)
            per_value.append(summarize(recs, _threshold(view, recs)))
        sweep_out = {"key": key, "values": values, "metrics": per_value, "retrieval_cached": answer_only(key)}
    regressed = M.regressions(m, baseline, tolerance) if baseline is not None else None
    report = write_report(out, m, records, title=f"docqa eval: {kb.name}, {Path(evalset.path).name or 'set'}",
                          baseline=baseline, regressed=regressed, skipped=evalset.skipped, notes=notes,
                          sweep=sweep_out)
    return {"metrics": m, "regressions": regressed, "report": str(report), "notes": notes, "sweep": sweep_out}


def _set_notes(kb, evalset: EvalSet) -> list[str]:
    """What the set asks that the KB cannot check: unknown gold documents, malformed lines."""
    notes = []
    wanted = {d for r in evalset.rows for d in r.doc_ids}
    if wanted:
        known = set(kb.store.doc_sources(sorted(wanted)))
        missing = sorted(wanted - known)
        if missing:
            notes.append(f"{len(missing)} of {len(wanted)} gold doc_ids are not in KB {kb.name!r} (their questions "
                         f"cannot hit): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if evalset.skipped:
        notes.append(f"{len(evalset.skipped)} malformed line(s) skipped")
    return notes
