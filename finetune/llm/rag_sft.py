"""`docqa finetune build-rag-sft`: RAG training data shaped exactly like serving, with refusals.

For each QA pair we retrieve passages from the KB with the same hybrid search as serving and render
the same ``prompts/qa_{zh,en}.j2`` template through the same renderer (``docqa.templates``), and the
same refusal (``docqa.text.refusal``) and citation form (``docqa.text.citations.cite``). Passages that
are not the gold one are the distractors the model must learn to ignore.

``refusal_share`` is the share of the built examples whose target is the refusal message. Questions
marked unanswerable in the data are refusals first; if they fall short of the share, answerable
questions are turned into refusals by removing every passage that holds the answer; if they exceed
it, the surplus unanswerable questions are left out (``dropped_unanswerable``). The cap matters:
trained on a majority of refusals (SQuAD 2 is half unanswerable) a small model learns to refuse
questions it could answer. ``refusal_share=None`` keeps the data's own mix (for evaluation sets).

QA file records: ``{"question", "answer", "id"?, "doc_id"?, "context"?}``; an empty ``answer`` or
``"is_impossible": true`` marks an unanswerable question. ``context`` (the gold passage) is used when
retrieval misses the gold passage, so the example still teaches reading rather than refusing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from docqa.errors import UserError
from docqa.templates import Prompts, prompts_for
from docqa.text.citations import cite
from docqa.text.language import lang_of
from docqa.text.refusal import REFUSAL
from finetune.records import DataFormatError, iter_records, require_str


@dataclass
class QA:
    question: str
    answer: str  # "" when unanswerable
    id: str = ""
    doc_id: str | None = None
    context: str | None = None


@dataclass
class BuildReport:
    answerable: int = 0
    refusals: int = 0
    gold_inserted: int = 0  # retrieval missed the gold passage; it was put in from ``context``
    skipped: int = 0  # answerable, but no passage with the answer could be found
    dropped_unanswerable: int = 0  # unanswerable questions beyond ``refusal_share``
    examples: list[dict] = field(default_factory=list)


def load_qa(path: str | Path) -> list[QA]:
    out: list[QA] = []
    for line, rec in iter_records(path):
        q = require_str(path, line, rec, "question")
        ans = rec.get("answer", "")
        if not isinstance(ans, str):
            raise DataFormatError(path, line, "'answer' must be a string (empty for unanswerable)")
        if rec.get("is_impossible") in (True, "true"):
            ans = ""
        ctx = rec.get("context")
        ctx = ctx if isinstance(ctx, str) else None
        out.append(QA(q, ans.strip(), str(rec.get("id", line)), rec.get("doc_id"), ctx))
    return out


def _holds(text: str, qa: QA) -> bool:
    return bool(qa.answer) and qa.answer in text


def build_example(kb, qa: QA, template: Prompts, rng: random.Random, *, k: int, refuse: bool,
                  report: BuildReport) -> dict | None:
    """One chat example for ``qa``: answer with a citation, or (``refuse``/unanswerable) the refusal."""
    from docqa.search import search

    lang = lang_of(qa.question)
    hits = search(kb, qa.question, k=k * 3)
    if refuse or not qa.answer:
        keep = [h for h in hits if not _holds(h.text, qa) and (qa.doc_id is None or h.doc_id != qa.doc_id)][:k]
        passages = [{"title": h.title, "text": h.text} for h in keep]
        target = REFUSAL[lang]
        report.refusals += 1
    else:
        top = [{"title": h.title, "text": h.text, "gold": _holds(h.text, qa)} for h in hits[:k]]
        if not any(p["gold"] for p in top):
            if not qa.context or qa.answer not in qa.context:
                report.skipped += 1
                return None
            top = top[:k - 1]
            top.insert(rng.randrange(len(top) + 1), {"title": "", "text": qa.context, "gold": True})
            report.gold_inserted += 1
        passages = top
        n = next(i for i, p in enumerate(top, 1) if p["gold"])
        target = cite(qa.answer, n, lang)
        report.answerable += 1
    from docqa.screening import unsafe_as_evidence

    # flagged as serving flags it (service/answering/pipeline.py), so training sees the serving prompt
    numbered = [{"n": i, "title": p["title"], "text": p["text"], "flagged": unsafe_as_evidence(p["text"])}
                for i, p in enumerate(passages, 1)]
    msgs = template.qa_messages(qa.question, numbered, lang)
    return {"id": qa.id, "messages": [*msgs, {"role": "assistant", "content": target}],
            "answerable": target != REFUSAL[lang], "answer": qa.answer}


def plan_refusals(qas: list[QA], share: float | None, rng: random.Random) -> tuple[list[QA], set[int]]:
    """(questions to build, indices among them to turn into gold-removed refusals) for a refusal ``share``."""
    if share is None:
        return list(qas), set()
    if not 0 <= share <= 1:
        raise UserError(f"refusal share must be in [0, 1], got {share}")
    ans = [i for i, q in enumerate(qas) if q.answer]
    una = [i for i, q in enumerate(qas) if not q.answer]
    if share >= 1:
        return list(qas), set(range(len(qas)))
    keep_una = len(una)
    if len(una) > share * len(qas):  # too many refusals already: keep len(ans)*share/(1-share) of them
        keep_una = min(len(una), round(len(ans) * share / (1 - share)))
    kept_una = set(rng.sample(una, keep_una))
    kept = [q for i, q in enumerate(qas) if q.answer or i in kept_una]
    convert = max(0, round(share * len(kept)) - keep_una)
    ans_pos = [i for i, q in enumerate(kept) if q.answer]
    return kept, set(rng.sample(ans_pos, min(convert, len(ans_pos))))


def build_rag_sft(kb, qas: list[QA], *, k: int = 3, refusal_share: float | None = 0.3, seed: int = 0,
                  prompts_dir: Path | None = None, progress: bool = True) -> BuildReport:
    """Chat-format training examples for the QA pairs (see the module docstring)."""
    from tqdm import tqdm

    rng = random.Random(seed)
    kept, refuse = plan_refusals(qas, refusal_share, rng)
    template = prompts_for(Path(prompts_dir) if prompts_dir else None)
    report = BuildReport(dropped_unanswerable=len(qas) - len(kept))
    for i, qa in enumerate(tqdm(kept, desc="rag-sft", leave=False, disable=not progress or None)):
        ex = build_example(kb, qa, template, rng, k=k, refuse=i in refuse, report=report)
        if ex is not None:
            report.examples.append(ex)
    return report
