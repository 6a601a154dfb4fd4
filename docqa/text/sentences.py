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


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, whitespace-trimmed, none empty."""
    text = text.strip()
    if not text:
        return []
    out: list[str] = []
    start = 0
    for m in _SPLIT.finditer(text):
        end = m.end()
        candidate = text[start:end]
        if m.group(0)[0] == "." and _ABBREV.search(candidate):
            continue
        if candidate.strip():
            out.append(candidate.strip())
        start = end
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out
