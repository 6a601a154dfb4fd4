"""The one normaliser every "must not be said" rule matches in (blocklist, screening).

People who want a forbidden claim through a filter write it so that an exact match misses:
"稳-赚-不-赔", traditional "穩賺不賠", "保·本·保·息", full-width "ＧＵＡＲＡＮＴＥＥＤ", zero-width
characters between the letters. The rules and the text they are matched against both go through
``normalize``:

1. characters of format category Cf (zero-width space/joiners, BOM, soft hyphen, bidi marks) removed;
2. NFKC (full-width letters, digits and punctuation become ASCII) and case folding;
3. traditional -> simplified Chinese with OpenCC's own package (``opencc``, config ``t2s``);
4. between two CJK characters, "soft" separators (whitespace, dashes, dots, middle dots, slashes,
   underscores, asterisks, pipes, tildes, and any emoji or other symbol: "稳💰赚不赔") are
   removed; "hard" ones (，。、；：！？ quotes and brackets)
   only inside a run whose inner characters are single CJK characters set apart by separators ("稳，赚，
   不，赔", "零、风、险"): between words they are real punctuation ("不保本，保息另计" must not read as
   保本保息);
5. a word spelled out in single Latin letters ("G-U-A-R-A-N-T-E-E-D", "g u a r a n t e e d") is joined;
6. other whitespace runs become one space (Latin phrases match whole words).

``Normalized.span(start, end)`` maps a match in the normalised text back to the original text, so a
rule can redact exactly what it matched. A normaliser that cannot load OpenCC raises
``NormalizerError`` at start-up: rules must never silently run on unnormalised text.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

from docqa.errors import Unavailable
from docqa.text.language import HAN_CLASS as CJK_CLASS

_SOFT = r"\s\-_·•・‧∙⋅.*~|/\\+=^`'\"…‐‑‒–—―﹏～＿※〃"
_HARD = r"，。、；：！？,;:!?“”‘’「」『』《》〈〉()（）【】\[\]{}"
_SOFT_BETWEEN_CJK = re.compile(rf"(?<=[{CJK_CLASS}])[{_SOFT}]+(?=[{CJK_CLASS}])")
# c0 S c1 S ... S cn with every inner character single (a separator on both sides): "计划稳，赚，不，赔，欢迎"
_SPACED_RUN = re.compile(rf"[{CJK_CLASS}](?:[{_SOFT}{_HARD}]+[{CJK_CLASS}](?=[{_SOFT}{_HARD}]))+"
                         rf"[{_SOFT}{_HARD}]+[{CJK_CLASS}]")
_SEPS = re.compile(rf"[{_SOFT}{_HARD}]+")
# a word spelled out in single Latin letters with separators: "G-U-A-R-A-N-T-E-E-D", "g u a r a n t e e d"
_SPACED_LATIN = re.compile(r"(?<![a-z0-9])[a-z](?:[\s\-_.·*/]+[a-z'](?![a-z0-9])){3,}")
_LATIN_SEPS = re.compile(r"[\s\-_.·*/]+")
_WS = re.compile(r"\s+")


class NormalizerError(Unavailable):
    """The normaliser cannot work (OpenCC missing or its data unreadable): a start-up error."""


@dataclass(frozen=True)
class Normalized:
    text: str
    index: tuple[int, ...]  # index[i]: position in the original text of text[i]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original-text span of ``text[start:end]`` (end exclusive)."""
        if end <= start:
            pos = self.index[start] if start < len(self.index) else (self.index[-1] + 1 if self.index else 0)
            return pos, pos
        return self.index[start], self.index[end - 1] + 1


_CONVERTER = None
_LOCK = threading.Lock()


def _t2s():
    global _CONVERTER
    if _CONVERTER is None:
        with _LOCK:
            if _CONVERTER is None:
                try:
                    import opencc

                    conv = opencc.OpenCC("t2s.json")
                    if conv.convert("穩賺不賠") != "稳赚不赔":
                        raise NormalizerError("OpenCC t2s did not convert a known phrase (its data is broken)")
                except NormalizerError:
                    raise
                except Exception as e:  # ImportError, or OpenCC's own error on missing config files
                    raise NormalizerError(f"cannot load OpenCC (the `opencc` package, config t2s): {e}; "
                                          "install it with `pip install opencc`") from None
                _CONVERTER = conv
    return _CONVERTER


def check_available() -> None:
    """Raise ``NormalizerError`` now if the normaliser cannot work (called at start-up)."""
    _t2s()


def _symbol(c: str) -> bool:
    """An emoji or another symbol (categories So, Sk, Sm, Sc, and emoji variation selectors): between two
    CJK characters it is a soft separator ("稳💰赚不赔" reads as 稳赚不赔)."""
    return unicodedata.category(c) in ("So", "Sk", "Sm", "Sc") or "\ufe00" <= c <= "\ufe0f"


def normalize(text: str) -> Normalized:
    chars, index = _fold(text)
    chars = _simplified(chars)
    if any(not c.isalnum() and _symbol(c) for c in chars):
        chars = ["·" if _symbol(c) else c for c in chars]  # one character for one: the index still holds
    keep = [True] * len(chars)
    joined = "".join(chars)
    for m in _SPACED_RUN.finditer(joined):
        for sep in _SEPS.finditer(joined, m.start(), m.end()):
            for i in range(sep.start(), sep.end()):
                keep[i] = False
    for m in _SOFT_BETWEEN_CJK.finditer(joined):
        for i in range(m.start(), m.end()):
            keep[i] = False
    for m in _SPACED_LATIN.finditer(joined):
        for sep in _LATIN_SEPS.finditer(joined, m.start(), m.end()):
            for i in range(sep.start(), sep.end()):
                keep[i] = False
    out_c: list[str] = []
    out_i: list[int] = []
    prev_space = True  # also trims leading whitespace
    for c, i, k in zip(chars, index, keep, strict=True):
        if not k:
            continue
        if c.isspace():
            if prev_space:
                continue
            c, prev_space = " ", True
        else:
            prev_space = False
        out_c.append(c)
        out_i.append(i)
    if out_c and out_c[-1] == " ":
        out_c.pop()
        out_i.pop()
    return Normalized("".join(out_c), tuple(out_i))


def _fold(text: str) -> tuple[list[str], list[int]]:
    """Steps 1-2 with the original position of every output character. The common case (nothing
    changes length, no format character) needs only a category scan, not a per-character rebuild."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    if len(folded) == len(text) and not any(unicodedata.category(c) == "Cf" for c in text):
        return list(folded), list(range(len(text)))
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) == "Cf":
            continue
        for c in unicodedata.normalize("NFKC", ch).casefold():
            if unicodedata.category(c) != "Cf":
                chars.append(c)
                index.append(i)
    return chars, index


def _simplified(chars: list[str]) -> list[str]:
    conv = _t2s()
    joined = "".join(chars)
    out = conv.convert(joined)
    if len(out) == len(joined):
        return list(out)
    return [conv.convert(c)[:1] or c for c in chars]  # a phrase changed length: per character keeps the map
