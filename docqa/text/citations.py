"""The citation grammar: ``[n]`` markers that tie an answer's sentences to the numbered passages.

An answer docqa returns carries normalised markers, ``[1]`` or ``[1][2]``, right after the sentence
they support. LLM drafts write them more loosely — ``[1, 2]``, ``【1】``, ``［1］``, ``[1；2]`` — and
``service.answering.citations.CitationFilter`` rewrites those into the normalised form with ``RAW_BODY``.
Everything that reads citations (the grounding guard, the evaluation metrics, streaming by
sentence) reads them with the functions here.
"""

from __future__ import annotations

import re

from docqa.text.language import Lang, lang_of

OPEN, CLOSE = "[【［", "]】］"
_SEP = r"\s*[,，、;；]\s*"
# the inside of a marker as LLMs write it: "1", " 1, 2 ", "1；3"
RAW_BODY = re.compile(rf"\s*\d{{1,3}}(?:{_SEP}\d{{1,3}})*\s*")
# what may stand after an opening bracket while the marker is still being written (streaming)
RAW_PARTIAL = re.compile(r"[\d\s,，、;；]*")
# a whole marker in any bracket, numbers in group 1
RAW_MARKER = re.compile(rf"[{re.escape(OPEN)}]\s*(\d{{1,3}}(?:{_SEP}\d{{1,3}})*)\s*[{re.escape(CLOSE)}]")
_LEADING = re.compile(rf"^(?:\s*{RAW_MARKER.pattern})+")
# a normalised answer cut after each marker run (and the full stop after it, if any):
# "A[1]B[2][3]。C" -> "A[1]", "B[2][3]。", "C"
_PIECE = re.compile(r".+?(?:\[\d+\])+[。．.!?！？；;]?|.+$", re.S)


def cite(text: str, n: int, lang: Lang | None = None) -> str:
    """``text`` with the marker of passage ``n`` after it: no space in Chinese ("一个月[1]"), one in English
    ("one month [1]"). The language is ``text``'s unless ``lang`` says."""
    return f"{text}[{n}]" if (lang or lang_of(text)) is Lang.ZH else f"{text} [{n}]"


def marker_numbers(body: str) -> list[int]:
    """The numbers inside one marker's brackets ("1, 2" -> [1, 2])."""
    return [int(x) for x in re.findall(r"\d+", body)]


def cited_numbers(text: str) -> list[int]:
    """Every passage number cited in ``text``, in order: "A[1]B[2,3]" -> [1, 2, 3]."""
    return [n for m in RAW_MARKER.finditer(text or "") for n in marker_numbers(m.group(1))]


def strip_citations(text: str) -> str:
    """``text`` without its citation markers."""
    return RAW_MARKER.sub("", text or "")


def leading_markers(text: str) -> str:
    """The markers ``text`` opens with ("[1][2]B" -> "[1][2]"; "" when it opens with none)."""
    m = _LEADING.match(text)
    return m.group(0) if m else ""


def cited_pieces(answer: str) -> list[str]:
    """A normalised answer cut after each run of markers, each piece with the markers (and the full stop)
    that close it."""
    return _PIECE.findall(answer)
