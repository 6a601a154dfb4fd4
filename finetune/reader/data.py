"""Training and held-out examples for the reader, from SQuAD-style files (CMRC 2018, DRCD, CAIL2019,
SQuAD 2) or a knowledge base's own passages.

Each question becomes windows the way serving cuts them (docqa/reader/windows.py):
- answerable: a window that holds the gold span (placed at a random point of it), kind ``span``;
- yes / no (CAIL): the passage's window that best covers the question's terms, kind ``yes``/``no``;
- unanswerable (CAIL, SQuAD 2): the best-covering window of its own passage, kind ``none``;
- hard negatives (kind ``none``): the question with its own passage minus the sentence that holds the
  answer, with the best-covering passage of another case/article of the same set, and with the window of its
  own passage that best covers the question without holding the answer (``other-window``: the confuser serving
  meets most — it reads several windows of the top passages, and the first shipped reader, trained without
  these, often ranked a neighbour window of the answer's passage above the one holding it).

Sets split by case / article (``part_of``: a stable hash of the group), never by question: a
question's passage is never read in training and in the held-out part.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from docqa.reader.decode import sentence_around
from docqa.reader.windows import Tokens, Window, room, window_at, windows

PARTS = {"train": (0, 60), "dev": (60, 80), "test": (80, 100), "all": (0, 100)}


def part_of(group: str) -> str:
    h = zlib.crc32(group.encode("utf-8")) % 100
    return next(p for p, (a, b) in PARTS.items() if p != "all" and a <= h < b)


def held_groups(groups) -> set[str]:
    """The KB documents held out of `finetune reader --kb` training: those that hash out of the train part;
    a small KB whose documents all hash to one side holds out every 5th and trains on the rest."""
    groups = sorted(groups)
    held = {g for g in groups if part_of(g) != "train"}
    if len(groups) > 1 and held in (set(), set(groups)):
        held = set(groups[::5])
    return held


@dataclass
class Question:
    qid: str
    group: str  # case / article: the unit of the split
    question: str
    context: str
    kind: str  # span | yes | no | none
    answers: list[tuple[int, str]] = field(default_factory=list)  # (char start, text) of gold spans
    source: str = ""


@dataclass
class Example:
    q: Question
    window: Window
    kind: str
    start: int = 0  # token indices in window.ids (0, 0 for kinds without a span)
    end: int = 0
    how: str = "gold"  # gold | minus-answer | other-passage | other-window


def parse_spec(spec: str) -> tuple[Path, str]:
    """``PATH@part`` (part: train | dev | test | all; default all)."""
    path, _, part = spec.partition("@")
    part = part or "all"
    if part not in PARTS:
        raise ValueError(f"{spec!r}: the part after @ must be one of {', '.join(PARTS)}")
    return Path(path), part


def read_squad(path: Path, part: str = "all") -> list[Question]:
    """Questions of a SQuAD-style file (``data`` -> ``paragraphs`` -> ``qas``) whose group is in ``part``."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    out: list[Question] = []
    for di, doc in enumerate(raw["data"] if isinstance(raw, dict) else raw):
        for pi, para in enumerate(doc.get("paragraphs", [])):
            own = str(doc.get("caseid") or doc.get("id") or doc.get("title") or para.get("id") or f"{di}")
            group = f"{path.name}:{own}"  # ids repeat across files (CAIL's dev and test both have case 11)
            if part != "all" and part_of(group) != part:
                continue
            ctx = para.get("context", "")
            for qi, qa in enumerate(para.get("qas", [])):
                q = _question(qa, ctx, group, path.name, f"{own}-{pi}-{qi}")
                if q is not None:
                    out.append(q)
    return out


def _question(qa: dict, ctx: str, group: str, source: str, fallback_id: str) -> Question | None:
    text = (qa.get("question") or "").strip()
    if not text or not ctx:
        return None
    qid = str(qa.get("id") or fallback_id)
    impossible = str(qa.get("is_impossible", "false")).lower() == "true"
    golds = [a for a in qa.get("answers", []) if (a.get("text") or "").strip()]
    if impossible or not golds:
        return Question(qid, group, text, ctx, "none", source=source) if impossible else None
    first = golds[0]["text"].strip()
    if first in ("YES", "NO"):
        return Question(qid, group, text, ctx, first.lower(), source=source)
    spans = []
    for a in golds:
        t, s = a["text"].strip(), int(a.get("answer_start", -1))
        if t in ("YES", "NO"):
            continue
        if ctx[s:s + len(t)] != t:  # annotators' offsets are sometimes off by a few characters
            found = ctx.find(t, max(0, s - 20))
            s = found if found >= 0 else ctx.find(t)
        if s >= 0:
            spans.append((s, t))
    return Question(qid, group, text, ctx, "span", spans, source) if spans else None


def best_window(tok: Tokens, q_ids: list[int], question: str, text: str, passage: int = 0) -> Window | None:
    """The window of ``text`` that best covers the question's terms (how serving picks a passage's window)."""
    from docqa.text.coverage import coverages

    p_ids, offs = tok.passage(text)
    wins = windows(q_ids, p_ids, offs, passage)
    if not wins:
        return None
    if len(wins) == 1:
        return wins[0]
    cov = coverages(question, [text[w.text_start:w.text_end] for w in wins])
    return wins[int(cov.argmax())]


def examples(questions: list[Question], tok: Tokens, rng: random.Random, minus_answer: float = 0.3,
             other_passage: float = 0.3, pool: list[Question] | None = None, other_window: float = 0.5,
             terse: float = 0.0) -> list[Example]:
    """Windows with labels for ``questions`` (see the module docstring); ``pool``: where other
    passages of the same set come from (default: the questions themselves). ``terse``: the share of span
    questions also asked tersely (``terse_question``), each with its gold window and, as a negative, the
    best-covering passage of another case/article asked the same terse way."""
    pool = pool or questions
    by_source: dict[str, list[Question]] = {}
    for q in pool:
        by_source.setdefault(q.source, []).append(q)
    out: list[Example] = []
    for q in questions:
        q_ids = tok.question(q.question)
        if q.kind == "span":
            ex = _gold_span(q, q_ids, tok, rng)
            if ex is None:
                continue
            out.append(ex)
            s, t = q.answers[0]
            if rng.random() < minus_answer:
                a, b = sentence_around(q.context, s, s + len(t))
                rest = (q.context[:a] + q.context[b:]).strip()
                if rest and all(ans not in rest for _, ans in q.answers):
                    w = best_window(tok, q_ids, q.question, rest)
                    if w is not None:
                        out.append(Example(q, w, "none", how="minus-answer"))
            if rng.random() < other_window:
                w = answerless_window(tok, q_ids, q)
                if w is not None:
                    out.append(Example(q, w, "none", how="other-window"))
            if terse and rng.random() < terse:
                out += _terse_pair(q, tok, rng, by_source.get(q.source, []))
        else:
            w = best_window(tok, q_ids, q.question, q.context)
            if w is not None:
                out.append(Example(q, w, q.kind))
        if q.kind != "none" and rng.random() < other_passage:
            other = _other_passage(q, by_source.get(q.source, []), rng)
            if other is not None:
                w = best_window(tok, q_ids, q.question, other)
                if w is not None:
                    out.append(Example(q, w, "none", how="other-passage"))
    return out


def terse_question(question: str, context: str, rng: random.Random, drop: float = 0.4) -> str | None:
    """The question with about half of the content words it shares with its passage taken out, the question word
    kept ("用人单位应当在多少日内为劳动者办理档案和社会保险关系转移手续？" -> "应当在多少日内为档案和社会保险关系
    转移？"); None when fewer than two shared words or too little is left.

    Why: the sets' questions were written looking at the passage and repeat its words, so a reader trained on them
    learns that an answerable question shares most of its window's words, and refuses a user who asks in fewer of
    them (the span found, P(answer) .07: bench/reports/statute_answers.md). A terse copy is still answerable."""
    from docqa.text.coverage import content_terms

    terms = [t for t in dict.fromkeys(content_terms(question)) if t in context and len(t) > 1]
    # whole words only ("生活费", not its "生活"), never a negation ("不得") nor the unit the question asks in
    # ("多少日内", "多少万元": the answer's own frame)
    shared = [t for t in terms if not any(t != o and t in o for o in terms) and not any(n in t for n in _NEGATIONS)
              and not re.search(rf"(?:多少|几|何){re.escape(t)}", question)]
    if len(shared) < 2:
        return None
    gone = [t for t in shared if rng.random() < drop][:len(shared) - 1]
    out = question
    for t in sorted(gone, key=len, reverse=True):
        out = out.replace(t, "", 1)
    out = re.sub(r"[，,、]{2,}", "，", out).strip("，,、 ")
    core = sum(len(t) for t in content_terms(out))
    return out if gone and core >= 2 and len(out) >= 5 else None


_NEGATIONS = "不未无非没勿禁"


def _terse_pair(q: Question, tok: Tokens, rng: random.Random, same: list[Question]) -> list[Example]:
    tq = terse_question(q.question, q.context, rng)
    if tq is None:
        return []
    t = Question(f"{q.qid}-terse", q.group, tq, q.context, q.kind, q.answers, q.source)
    q_ids = tok.question(tq)
    out = [ex for ex in [_gold_span(t, q_ids, tok, rng)] if ex is not None]
    other = _other_passage(t, same, rng)
    if other is not None:
        w = best_window(tok, q_ids, tq, other)
        if w is not None:
            out.append(Example(t, w, "none", how="other-passage"))
    return out


def answerless_window(tok: Tokens, q_ids: list[int], q: Question) -> Window | None:
    """The window of the question's own passage (cut as serving cuts it) that best covers the question among
    those that neither overlap a gold span nor contain a gold answer's text; None for a one-window passage."""
    from docqa.text.coverage import coverages

    p_ids, offs = tok.passage(q.context)
    golds = [(s, s + len(t), t) for s, t in q.answers]
    wins = [w for w in windows(q_ids, p_ids, offs)
            if not any(w.text_start < e and s < w.text_end for s, e, _ in golds)
            and not any(t in q.context[w.text_start:w.text_end] for _, _, t in golds)]
    if not wins:
        return None
    cov = coverages(q.question, [q.context[w.text_start:w.text_end] for w in wins])
    return wins[int(cov.argmax())]


def _gold_span(q: Question, q_ids: list[int], tok: Tokens, rng: random.Random) -> Example | None:
    p_ids, offs = tok.passage(q.context)
    s, t = q.answers[0]
    n = room(q_ids)
    first = next((i for i, (a, b) in enumerate(offs) if b > s), None)
    last = max((i for i, (a, b) in enumerate(offs) if a < s + len(t)), default=None)
    if first is None or last is None or last < first or last - first + 1 > n:
        return None
    lo, hi = max(0, last - n + 1), min(first, max(len(p_ids) - n, 0))
    start = rng.randint(lo, hi) if hi >= lo else lo
    w = window_at(q_ids, p_ids, offs, start, n)
    span = w.token_span(s, s + len(t))
    if span is None:
        return None
    return Example(q, w, "span", span[0], span[1])


def _other_passage(q: Question, same: list[Question], rng: random.Random, tries: int = 24) -> str | None:
    """The passage of another group of the same set that best covers the question (without its answer)."""
    from docqa.text.coverage import coverages

    cands = list({o.context for o in rng.sample(same, min(len(same), tries * 2)) if o.group != q.group})[:tries]
    golds = [t for _, t in q.answers]
    cands = [c for c in cands if not any(g in c for g in golds)]
    if not cands:
        return None
    cov = coverages(q.question, cands)
    return cands[int(cov.argmax())]


def kb_questions(kb, n: int, seed: int = 0, llm=None) -> list[Question]:
    """Questions about the KB's own passages (``docqa eval make``'s rule, or the LLM's wording), each
    with its passage as the context and the fact as the gold span; grouped by document for the split."""
    from service.evaluation.make import passage_questions

    out = []
    for i, (unit, sentence, question, span) in enumerate(passage_questions(kb, n, seed=seed, llm=llm)):
        at = unit.text.find(sentence)
        start = unit.text.find(span, max(at, 0))
        if start < 0:
            continue
        out.append(Question(f"kb-{i}", f"kb:{kb.name}:{unit.doc_id}", question, unit.text, "span",
                            [(start, span)], f"kb:{kb.name}"))
    return out

