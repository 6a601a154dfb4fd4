"""Which language a text is in, and which characters are written without spaces between them.

One rule for every side: a text is Chinese when it holds a Han character (questions are short: one is
enough), or, for a caller that reads longer text and wants its main language (``min_share``), when Han
characters make up at least that share of its non-space characters. Everything else is English: the
two languages docqa answers in.

``HAN_CLASS`` is the character class the keyword tokenizer cuts with jieba; ``is_cjk`` is the wider
class of characters that sit next to each other without a space (Han, kana, CJK and full-width
punctuation), which is what decides whether two lines are joined with a space.
"""

from __future__ import annotations

import re
from enum import StrEnum

# Han: CJK unified ideographs, extension A, compatibility ideographs
HAN_CLASS = "\u3400-\u9fff\uf900-\ufaff"
HAN = re.compile(f"[{HAN_CLASS}]")
_SPACE = re.compile(r"\s")

_CJK_RANGES = (
    (0x2E80, 0x2FDF),
    (0x3000, 0x303F),
    (0x3040, 0x30FF),
    (0x3100, 0x312F),
    (0x31A0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
    (0x20000, 0x2FA1F),
)


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"


def has_han(text: str) -> bool:
    """True when ``text`` holds a Han character."""
    return HAN.search(text or "") is not None


def lang_of(text: str, *, min_share: float = 0.0) -> Lang:
    """``Lang.ZH`` when ``text`` holds a Han character and, with ``min_share``, when Han characters are at
    least that share of its non-space characters; else ``Lang.EN``."""
    text = text or ""
    if min_share <= 0.0:
        return Lang.ZH if has_han(text) else Lang.EN
    chars = len(_SPACE.sub("", text))
    return Lang.ZH if chars and len(HAN.findall(text)) >= min_share * chars else Lang.EN


def is_cjk(ch: str) -> bool:
    """True for Han/kana characters and CJK or full-width punctuation (written with no space around)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def joins_without_space(a: str, b: str) -> bool:
    """Whether text ``a`` and text ``b`` are joined with no space between them (either side is CJK)."""
    return bool(a) and bool(b) and (is_cjk(a[-1]) or is_cjk(b[0]))
