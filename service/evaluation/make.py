"""``docqa eval make``: an eval set built from the KB itself, for users who have none.

Answerable questions come from key sentences of the KB's passages: a sentence holding a fact (a
number with its unit, else one of the passage's keyphrases) becomes a question about that fact, and
the fact is the gold span; the sentence's document is the gold document.

- With an LLM configured (``llm_backend`` not extractive), the LLM writes the question from the
  sentence and its answer (prompts/eval_question_{zh,en}.j2), so the wording differs from the
  passage: this measures retrieval as users ask, and answering.
- Without one, the question is the sentence itself with the fact turned into its question word
  ("试用期不得超过二个月" -> "试用期不得超过多少个月？"; a cloze "____" in English). The wording is
  the passage's own, so retrieval is an upper bound (paraphrased questions will do worse); what it
  does measure is whether the answer quotes the fact and cites the right passage, whether numbers
  survive, and how the refusal threshold treats questions the KB does answer.

Unanswerable questions are made the same way from held-out documents (``--holdout``: files that are
NOT in the KB, e.g. another department's), so their facts are really absent: the KB should refuse
them, which measures refusal on questions that look like the answerable ones. A sentence that also
occurs in the KB is skipped. Without held-out documents the set has no unanswerable questions and
the refusal metrics stay empty (the command says so).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from docqa.text.language import has_han
from docqa.text.sentences import split_sentences
from service.evaluation.dataset import EvalRow

_ZH_NUM = "零〇一二三四五六七八九十百千万两"
# durations, amounts and counts; not dates ("10月1日", "2019年") and not article numbers ("第八十四条")
_UNIT = (r"(?:个月|个工作日|工作日|小时|分钟|天|日内|周|岁|元|万元|亿元|倍|人|名|次|项|页|公里|平方米|"
         r"%|％|percent|days?|months?|years?|hours?|minutes?|weeks?|yuan|dollars?|people|times)")
_NUM = rf"(?:\d+(?:[.,]\d+)?|[{_ZH_NUM}]+)"
_FACT = re.compile(rf"(?<![第\d{_ZH_NUM}]){_NUM}\s?{_UNIT}|(?<![第\d{_ZH_NUM}])(?:\d{{1,2}}|[{_ZH_NUM}]+)年(?!\d)"
                   rf"|百分之[{_ZH_NUM}点]+", re.I)
_MIN_HEAD = 8  # characters of the sentence before the fact: the question needs context
_QWORD = {"个月": "多少个月", "年": "多少年", "日内": "多少日内", "天": "多少天", "周": "多少周", "小时": "多少小时",
          "分钟": "多少分钟", "元": "多少元", "万元": "多少万元", "亿元": "多少亿元", "岁": "多少岁", "倍": "多少倍",
          "人": "多少人", "名": "多少名", "次": "多少次", "个工作日": "多少个工作日", "工作日": "多少个工作日"}


def fact_span(sentence: str, keyphrases: list[str]) -> str | None:
    for m in _FACT.finditer(sentence):
        if m.start() >= _MIN_HEAD:
            return m.group(0).strip()
    for kp in sorted(keyphrases, key=len, reverse=True):
        if len(kp) >= 2 and kp in sentence and sentence.index(kp) >= _MIN_HEAD:
            return kp
    return None


def rule_question(sentence: str, span: str) -> str:
    """The sentence as a question about ``span`` (see the module docstring)."""
    body = sentence.rstrip("。．.!！;；")
    head = body[: body.index(span)]
    if has_han(sentence):
        if span.startswith("百分之") or span.endswith(("%", "％")):
            word = "百分之多少"
        else:
            unit = next((u for u in sorted(_QWORD, key=len, reverse=True) if span.endswith(u)), None)
            word = _QWORD[unit] if unit else "什么"
        return (head + word).strip("，,；; ") + "？"
    return body.replace(span, "____", 1) + " (fill in the blank)"


def _candidates(units, rng: random.Random) -> list[tuple[str, str, str]]:
    """(doc_id, sentence, span) from segment units, shuffled."""
    return [(u.doc_id, s, span) for u, s, span in fact_sentences(units, rng)]


def fact_sentences(units, rng: random.Random) -> list[tuple[object, str, str]]:
    """(unit, sentence, span): the sentences of ``units`` that hold a fact to ask about, shuffled."""
    out = []
    for u in units:
        kps = [k.strip() for k in re.split(r"[;；,，\n]", u.keyinfo or "") if k.strip()]
        for s in split_sentences(u.text):
            if not 12 <= len(s) <= 160:
                continue
            span = fact_span(s, kps)
            if span and s.count(span) == 1:  # twice: the question would give the answer away
                out.append((u, s, span))
    rng.shuffle(out)
    return out


def passage_questions(kb, n: int, *, seed: int = 0, llm=None) -> list[tuple[object, str, str, str]]:
    """(unit, sentence, question, span) for ``n`` facts of the KB's passages, the way the eval set's
    answerable questions are made (the LLM's wording when one is given): `docqa finetune reader --kb`."""
    from docqa.units import Level

    rng = random.Random(seed)
    units = [u for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id) if u.level is Level.SEGMENT]
    out, seen = [], set()
    for u, sentence, span in fact_sentences(units, rng):
        if len(out) >= n:
            break
        if sentence in seen:
            continue
        seen.add(sentence)
        out.append((u, sentence, _llm_question(llm, sentence, span) or rule_question(sentence, span), span))
    return out


def make_eval_set(kb, n: int, *, holdout: list[Path] | None = None, unanswerable_share: float = 0.3,
                  seed: int = 0, llm=None, progress: bool = True) -> tuple[list[EvalRow], list[str]]:
    """``n`` rows (a share of them unanswerable when ``holdout`` documents are given) and notes."""
    from docqa.units import Level

    rng = random.Random(seed)
    notes: list[str] = []
    units = [u for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id) if u.level is Level.SEGMENT]
    n_unans = int(round(n * unanswerable_share)) if holdout else 0
    rows: list[EvalRow] = []
    seen: set[str] = set()
    for doc_id, sentence, span in _candidates(units, rng):
        if len(rows) >= n - n_unans:
            break
        if sentence in seen:
            continue
        seen.add(sentence)
        q = _llm_question(llm, sentence, span) or rule_question(sentence, span)
        rows.append(EvalRow(id=f"a{len(rows) + 1}", question=q, answers=[span], doc_ids=[doc_id]))
    if len(rows) < n - n_unans:
        notes.append(f"the KB yields {len(rows)} answerable questions (asked for {n - n_unans}): it has few "
                     "sentences holding a number or a keyphrase")
    if holdout:
        rows += _unanswerable(kb, holdout, n_unans, rng, llm, notes)
    else:
        notes.append("no held-out documents (--holdout): the set has no unanswerable questions, so refusal "
                     "accuracy is not measured")
    return rows, notes


def _unanswerable(kb, paths: list[Path], n: int, rng: random.Random, llm, notes: list[str]) -> list[EvalRow]:
    from docqa.units import Level, Unit
    from ingest.loaders import LoadError, iter_files, load_file

    units = []
    for path in iter_files(paths):
        try:
            for doc in load_file(path):
                units += [Unit(unit_id=0, doc_id=doc.doc_id, level=Level.SEGMENT, ord=i, text=b.text)
                          for i, b in enumerate(doc.blocks)]
        except LoadError as e:
            notes.append(f"held-out file skipped: {e}")
    kb_text = {s for d in kb.store.iter_docs() for b in d.blocks for s in split_sentences(b.text)}
    out: list[EvalRow] = []
    for _, sentence, span in _candidates(units, rng):
        if len(out) >= n:
            break
        if sentence in kb_text:
            continue
        q = _llm_question(llm, sentence, span) or rule_question(sentence, span)
        out.append(EvalRow(id=f"u{len(out) + 1}", question=q, unanswerable=True))
    if len(out) < n:
        notes.append(f"the held-out documents yield {len(out)} unanswerable questions (asked for {n})")
    return out


def _llm_question(llm, sentence: str, span: str) -> str | None:
    """The LLM's question for (sentence, answer), or None (no LLM, or it failed: the rule question is used)."""
    if llm is None:
        return None
    from docqa.templates import prompts_for
    from docqa.text.language import lang_of
    from service.llm import GenParams, LLMError

    lang = lang_of(sentence)
    try:
        text = prompts_for(None).render(f"eval_question_{lang}.j2", sentence=sentence, answer=span)
        q = llm.generate([{"role": "user", "content": text}], GenParams(temperature=0.0, max_tokens=96)).strip()
    except (LLMError, ValueError):
        return None
    q = q.splitlines()[0].strip().strip('"“”') if q else ""
    return q if 4 <= len(q) <= 200 and span not in q else None
