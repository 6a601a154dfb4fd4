"""The reader in the answer path: read the top passages, answer with the span, refuse when none holds one.

Windows: each of the top passages is cut as the reader was trained (docqa/reader/windows.py); the
window of a passage that best covers the question's terms is read, one per passage in retrieval order,
then further windows of the top passages while ``reader_windows`` allows (int8 ONNX; the first
``reader_windows_first`` of them in one batch, the rest only when none of those reaches ``reader_threshold``). The
window most likely to hold an answer decides: P(answer) below ``reader_threshold`` is a refusal;
otherwise its span (or yes / no) is the short answer, and the sentence holding it is quoted with its
[n] and the passage's pinpoint label:

    二个月。依据：《中华人民共和国劳动合同法》第十九条：“……试用期不得超过二个月。”[1]

A reader that cannot load leaves answering to the sentence scores (service/answering/extractive.py),
with a warning in each answer and /readyz degraded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docqa.reader.decode import sentence_around
from docqa.search import Hit
from docqa.text.coverage import coverages
from docqa.text.language import has_han

YES_NO = {"zh": {"yes": "是", "no": "否"}, "en": {"yes": "Yes", "no": "No"}}
_TRAIL = "。．.，,；;：:！!？?、 \n"
_ARTICLE_HEAD = re.compile(r"(第[零〇一二三四五六七八九十百千两\d]+条)\s*")


_FAILED: dict[str | None, str] = {}  # reader_model -> why it cannot load (tried once per process)


def reader_for(settings) -> tuple[object | None, str | None]:
    """(the reader, None), or (None, why not) when it is on but cannot load, or (None, None) when off."""
    if not settings.reader:
        return None, None
    key = settings.reader_model
    if key in _FAILED:
        return None, _FAILED[key]
    from docqa.reader.runtime import ReaderUnavailable, load_reader

    try:
        return load_reader(key), None
    except ReaderUnavailable as e:
        _FAILED[key] = str(e)
        return None, str(e)


@dataclass
class ReadAnswer:
    hit_index: int
    kind: str  # span | yes | no
    short: str  # the span as written in the passage, or 是/否 (Yes/No)
    start: int  # the span's characters in the passage (-1 for yes / no)
    end: int
    sentence: str  # the passage sentence that holds the answer (for yes / no: the best-covering one)
    p_answer: float
    span_p: float = 1.0  # the reader's probability of its span within the window (render: is it worth stating)

    def quotes(self) -> list[str]:
        """What the answer takes from the passage (the compliance guard grounds these)."""
        return [self.short, self.sentence] if self.kind == "span" else [self.sentence]

    def span_field(self, n: int) -> dict:
        """The ``answer_span`` of the API: what the reader found, where."""
        return {"text": self.short, "kind": self.kind, "n": n, "start": self.start, "end": self.end,
                "sentence": self.sentence, "probability": round(self.p_answer, 4)}


def reading_text(text: str) -> str:
    """What the reader reads of a passage: the text, or a table's rows as "header：cell；header：cell"
    lines (the reader learned prose; the quote then says what each cell is, as sentence quoting did)."""
    from docqa.text.tables import is_markdown_table, row_sentences

    return "\n".join(row_sentences(text)) if is_markdown_table(text) else text


def pick_windows(reader, question: str, texts: list[str], limit: int, max_length: int):
    """The windows read for ``question``: the best-covering window of each passage in retrieval order,
    then the next best of the top passages, ``limit`` in all, ``max_length`` tokens each."""
    _, per_hit = reader.windows(question, texts[:limit], max_length)
    ranked: list[list] = []
    for i, wins in enumerate(per_hit):
        if len(wins) > 1:
            cov = coverages(question, [texts[i][w.text_start:w.text_end] for w in wins])
            wins = [w for _, w in sorted(zip(cov, wins, strict=True), key=lambda p: -p[0])]
        ranked.append(wins)
    chosen = [wins[0] for wins in ranked if wins][:limit]
    depth = 1
    while len(chosen) < limit and any(len(w) > depth for w in ranked):
        chosen += [wins[depth] for wins in ranked if len(wins) > depth][:limit - len(chosen)]
        depth += 1
    return chosen


CLAUSE_MARGIN = 0.25  # see read_texts


def read_texts(reader, question: str, passages: list[str], limit: int, max_length: int = 128,
               clause_margin: float = CLAUSE_MARGIN, ranked: bool = True, first: int | None = None,
               enough: float = 1.0, agreement: list[float] | None = None):
    """(the best reading, the texts read): the reader on the top ``passages`` (``pick_windows``); the
    reading is None when there is nothing to read. Offsets are in ``texts[reading.passage]``.

    In two steps when ``first`` is less than ``limit``: the first ``first`` windows are read, and the rest
    only when none of those reaches P(answer) ``enough`` (the answer threshold: a question the first windows
    answer costs ``first`` windows, one they would refuse gets all ``limit`` before it is refused). A window's
    probability depends on that window (and, a little, on its batch: int8 dynamic quantisation scales activations
    over the whole batch), so a question is answered exactly when the best over all ``limit`` windows reaches
    ``enough``, as in one batch; only which window answers may differ, when the first ones already do.

    ``agreement``: each passage's ``retrieval_agreement`` (docqa/reader/rank.py), one of the ranker's features;
    0 for each when not given.

    A check on the span: when another clause of the window covers the question's terms better than the span's
    own clause by more than ``clause_margin`` (coverage is a share, 0-1), the span is taken from that clause
    instead. Parallel clauses of a statute ("三个月以上不满一年的，试用期不得超过一个月；一年以上不满三年的，
    ……二个月") read alike to a small reader; the condition words the question repeats tell them apart, and where
    those are the same words, its numbers do: a clause that states all of them (``condition_match``) is taken
    over the span's own clause when that one states only some (one that states none is another kind of clause:
    "1935年，……是誰的支持者？" is answered after the year, not in a clause that repeats it)."""
    from docqa.reader.decode import best_span, clauses, read_all

    texts = [reading_text(p) for p in passages[:limit]]
    wins = pick_windows(reader, question, texts, limit, max_length)
    if not wins:
        return None, texts
    ranker = getattr(reader, "ranker", None) if ranked else None
    n = len(wins) if first is None else max(1, min(first, len(wins)))
    start, end, kind = (list(a) for a in reader.logits(wins[:n]))  # per window: its own token length
    agree = (list(agreement or []) + [0.0] * len(texts))[:len(texts)]
    best = rank(ranker, question, read_all(start, end, kind, wins[:n], texts), wins[:n], texts, agree)
    if n < len(wins) and best.p_answer < enough:
        for acc, more in zip((start, end, kind), reader.logits(wins[n:]), strict=True):
            acc.extend(more)
        best = rank(ranker, question, read_all(start, end, kind, wins, texts), wins, texts, agree)
    w, text = wins[best.window], texts[best.passage]
    best.window_text = (w.text_start, w.text_end)
    if best.kind == "span" and clause_margin < 1:
        spans = clauses(text, w.text_start, w.text_end)
        if len(spans) > 1:
            cov = coverages(question, [text[a:b] for a, b in spans])
            own = next((k for k, (a, b) in enumerate(spans) if a <= best.start < b), None)
            top = int(cov.argmax())
            held = condition_match(question, [text[a:b] for a, b in spans])
            # parallel clauses: the span's states some of the question's numbers, another states them all
            if own is not None and 0 < held[own] < 1 and max(held) == 1:
                top = max((k for k in range(len(spans)) if held[k] == 1), key=lambda k: cov[k])
                cov[top] = max(cov[top], cov[own] + clause_margin + 1e-6)
            if own is not None and cov[top] - cov[own] > clause_margin:
                i, j, p = best_span(start[best.window], end[best.window], w, text=text, within=spans[top])
                best.start, best.end = w.offsets[i - w.first][0], w.offsets[j - w.first][1]
                best.span_score = p
    return best, texts


def condition_match(question: str, texts: list[str]) -> list[float]:
    """The share of the question's numbers (value and unit: "一年以上不满三年" -> 1 年, 3 年) each text states;
    1.0 for every text when the question states none. Parallel clauses of a statute share their words and differ
    in their numbers ("三个月以上不满一年的……一个月；一年以上不满三年的……二个月"): the clause that states the
    question's numbers is the one it asks about."""
    from docqa.text.facts import numbers

    want = numbers(question)
    if not want:
        return [1.0] * len(texts)
    return [len(want & numbers(t)) / len(want) for t in texts]


def rank(ranker, question: str, readings: list, wins: list, texts: list[str], agreement: list[float] | None = None):
    """The reading that answers: the reader's most likely window, or with a window ranker (docqa/reader/rank.py)
    the window its combined probability puts first, that probability becoming the reading's ``p_answer``.
    ``agreement``: each passage's ``retrieval_agreement`` (0 when not given)."""
    if ranker is None:
        return readings[0]
    from docqa.reader.rank import features

    cov = coverages(question, [texts[w.passage][w.text_start:w.text_end] for w in wins])
    probs = ranker.probabilities([features(r.p_kinds["none"], r.span_score, cov[r.window], r.passage,
                                           agreement[r.passage] if agreement else 0.0) for r in readings])
    k = max(range(len(readings)), key=lambda i: (probs[i], -readings[i].window))
    best = readings[k]
    best.p_answer = float(probs[k])
    return best


def read_answer(reader, question: str, hits: list[Hit], limit: int, max_length: int = 128, ranked: bool = True,
                first: int | None = None, enough: float = 1.0) -> tuple[ReadAnswer | None, float]:
    """The best reading of the top passages and its P(answer) (None, 0.0 when there is nothing to read);
    ``first`` / ``enough``: read in two steps (``read_texts``)."""
    from docqa.reader.rank import retrieval_agreement

    best, texts = read_texts(reader, question, [h.text for h in hits], limit, max_length, ranked=ranked,
                             first=first, enough=enough, agreement=[retrieval_agreement(h) for h in hits[:limit]])
    if best is None:
        return None, 0.0
    text = texts[best.passage]
    if best.kind == "span":
        short = text[best.start:best.end].strip().strip(_TRAIL) or text[best.start:best.end]
        a, b = sentence_around(text, best.start, best.end)
    else:
        lang = "zh" if has_han(question) else "en"
        short = YES_NO[lang][best.kind]
        a, b = _best_sentence(question, text, *best.window_text)
    sentence = text[a:b].strip()
    start, end = (best.start, best.end) if text is hits[best.passage].text else (-1, -1)
    return ReadAnswer(best.passage, best.kind, short, start, end, sentence, best.p_answer,
                      best.span_score if best.kind == "span" else 1.0), best.p_answer


def _best_sentence(question: str, text: str, lo: int, hi: int) -> tuple[int, int]:
    """The sentence of text[lo:hi] that best covers the question (evidence for a yes / no)."""
    spans, a = [], lo
    while a < hi:
        s, e = sentence_around(text, a, a + 1)
        spans.append((max(s, lo), min(e, hi)))
        a = max(e, a + 1)
    cov = coverages(question, [text[s:e] for s, e in spans])
    return spans[int(cov.argmax())]


# Below this span probability the short answer is not stated, only the sentence quoted. On the serving path's
# windows that hold the answer (dev parts of CAIL2019, CMRC 2018, DRCD and statutes; the shipped reader) spans
# were exact / contained the answer: under .1 12% / 36%, .1-.3 31% / 59%, .3-.5 52% / 79%, over .5 77% / 90%
# (bench/reports/reader_rank.md): a wrong short answer in front of the right quote misleads more than none.
SHORT_MIN_SPAN_P = 0.3


def render(ans: ReadAnswer, hit: Hit, n: int, question: str) -> str:
    """The short answer, then the sentence that holds it with the passage's label and [n]; just the
    quote when the span is (nearly) the whole sentence."""
    quote = ans.sentence.strip()
    if ans.kind == "span" and (len(ans.short) >= 0.8 * len(quote.strip(_TRAIL)) or ans.span_p < SHORT_MIN_SPAN_P):
        return f"{quote}[{n}]"
    m = _ARTICLE_HEAD.match(quote)
    if m and hit.label.endswith(m.group(1)) and len(quote) > m.end():
        quote = quote[m.end():]  # "第十九条：“第十九条 劳动合同..." says the article twice
    quote = quote.rstrip("；;，,、：: ")  # a clause of a longer sentence: its separator is not the quote's end
    if has_han(question):
        source = f"{hit.label}：" if hit.label else ""
        return f"{ans.short}。依据：{source}“{quote}”[{n}]"
    source = f"{hit.label}: " if hit.label else ""
    return f"{ans.short}. Source: {source}\"{quote}\"[{n}]"
