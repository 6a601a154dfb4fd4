"""Sentence splitting for Chinese and English text.

Splits after 。！？；… and after . ! ? followed by whitespace (not inside numbers such as "3.5",
nor after common abbreviations), and keeps closing quotes and brackets with their sentence, so
"他说：“你好。”然后走了。" gives two sentences, the first ending in ”.
"""

from __future__ import annotations

import re

_CLOSERS = "”’\"'）)】］]」』》〉"
_ZH_END = "。！？；!?;…"
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|No|vs|etc|e\.g|i\.e|Inc|Ltd|Co|Art|Sec|Fig)\.)$", re.I)

_C = re.escape(_CLOSERS)
_SPLIT = re.compile(
    rf"(?:[{re.escape(_ZH_END)}]+|…+|\.{{3,}})[{_C}]*"  # Chinese enders (and ellipses) split at once
    rf"|(?<=[A-Za-z0-9{_C}])[.!?]+[{_C}]*(?=\s+|$)"  # English enders need a space after
)


def _ends(text: str):
    """End offsets of the sentence enders of ``text`` that split it (``_SPLIT`` less abbreviations)."""
    start = 0
    for m in _SPLIT.finditer(text):
        if m.group(0)[0] == "." and _ABBREV.search(text[start:m.end()]):
            continue
        start = m.end()
        yield start


_TRAIL = re.compile(r"(?:\s*\[\d+\])*\s*")  # citation markers and spaces that follow a full stop
_LINE_END = re.compile(r"\n\s*")


_AT_ONCE = "。！？；…\n"  # enders that nothing can continue: a sentence ending in one is whole at once


def complete_end(text: str) -> int:
    """How much of ``text`` — the start of a text still being written — is whole sentences: up to the end of the
    last sentence or line, with the citation markers and spaces that follow it. 0 when none is finished.
    A full-width ender (。！？；…) or a line break ends a sentence at once; an ASCII one only once text follows
    it ("3." may go on as "3.5", "e.g." as a word), and markers or spaces at the very end are held with their
    sentence (more may follow)."""
    best = 0
    for e in [*_ends(text), *(m.end() for m in _LINE_END.finditer(text))]:
        t = _TRAIL.match(text, e).end()
        whole = t < len(text) or (t == e and text[:e].rstrip(_CLOSERS + " \t")[-1:] in _AT_ONCE)
        if whole and t > best:
            best = t
    return best


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, whitespace-trimmed, none empty."""
    text = text.strip()
    if not text:
        return []
    out: list[str] = []
    start = 0
    for end in _ends(text):
        if text[start:end].strip():
            out.append(text[start:end].strip())
        start = end
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out
