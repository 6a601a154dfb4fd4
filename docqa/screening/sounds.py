"""How a text sounds: its toneless pinyin syllables, for claims written as homophones or in pinyin.

"稳转不赔" (转 for 赚), "wen zhuan bu pei" and "稳zhuan不赔" all read aloud as the forbidden claim 稳赚不赔;
"稳挣不赔" differs in one syllable that starts the same way (zheng for zhuan). ``SoundIndex`` holds the
pinyin of the blocklist's longer Chinese terms; ``find`` reads a normalised text as a sequence of
syllables (Chinese characters through ``pypinyin``, Latin words that are pinyin syllables as
themselves, written apart or together, soft separators and spaces between Latin syllables ignored,
anything else a break) and
reports where a term's syllables occur, all of them alike or all but one, whose initial is the same.

Only terms of ``MIN_SYLLABLES`` or more take part: two or three syllables alike are common in clean
text (必涨 bi zhang and 这笔账 zhe bi zhang), four in a row with one near miss are not (the evasion
bench measures this on 500 clean sentences). pypinyin (MIT) carries its dictionary in the wheel.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

from docqa.text.language import HAN_CLASS

MIN_SYLLABLES = 4
_HAN_RUN = re.compile(f"[{HAN_CLASS}]+")
_LATIN_WORD = re.compile(r"[a-z]+")
_JOINS_LATIN = re.compile(r"[\s\-_·.*~/']*")  # what may stand between two Latin syllables
_INITIALS = ("zh", "ch", "sh")
_LOCK = threading.Lock()
_SYLLABLES: frozenset[str] | None = None


def _pinyin(text: str) -> list[str]:
    from pypinyin import lazy_pinyin

    out = lazy_pinyin(text, errors=lambda s: list(s))
    return out if len(out) == len(text) else [lazy_pinyin(c, errors=lambda s: list(s))[0] for c in text]


@functools.lru_cache(maxsize=32768)
def _readings(char: str) -> frozenset[str]:
    """Every toneless reading of one character (its dictionary readings and the one pypinyin reads it by
    alone); the reading it takes inside a phrase is one of them."""
    from pypinyin import Style, pinyin

    return frozenset(pinyin(char, style=Style.NORMAL, heteronym=True)[0]) | frozenset(_pinyin(char))


def syllable_set() -> frozenset[str]:
    """Every toneless Mandarin syllable (about 400), from pypinyin's dictionary."""
    global _SYLLABLES
    if _SYLLABLES is None:
        with _LOCK:
            if _SYLLABLES is None:
                from pypinyin.pinyin_dict import pinyin_dict

                han = "".join(chr(c) for c in pinyin_dict if 0x4E00 <= c <= 0x9FFF)
                _SYLLABLES = frozenset(s for s in _pinyin(han) if s.isascii() and s.isalpha() and
                                       s not in ("m", "n", "ng", "hm", "hng"))
    return _SYLLABLES


@dataclass(frozen=True)
class Syllable:
    sound: str
    start: int  # span in the text read
    end: int
    joined: bool  # adjacent to the syllable before it (nothing but soft separators between)


def syllables(text: str) -> list[Syllable]:
    """``text`` (normalised: simplified, case-folded) as syllables with their spans."""
    known = syllable_set()
    out: list[Syllable] = []
    pos = 0
    tokens = sorted([(m.start(), m.end(), "han") for m in _HAN_RUN.finditer(text)] +
                    [(m.start(), m.end(), "latin") for m in _LATIN_WORD.finditer(text)])
    for start, end, kind in tokens:
        gap = text[pos:start]
        joined = bool(out) and (gap == "" or bool(_JOINS_LATIN.fullmatch(gap)))
        if kind == "han":
            for i, s in enumerate(_pinyin(text[start:end])):
                out.append(Syllable(s, start + i, start + i + 1, joined if i == 0 else True))
        else:
            parts = _split(text[start:end], known)
            if parts:  # pinyin, syllables apart or written together ("zhuan", "chengnuo", "wenzhuanbupei")
                at = start
                for k, p in enumerate(parts):
                    out.append(Syllable(p, at, at + len(p), joined if k == 0 else True))
                    at += len(p)
            else:  # an English word breaks the sequence
                out.append(Syllable("", start, end, False))
        pos = end
    return out


def _reading_sets(text: str) -> list[frozenset[str]]:
    """``syllables(text)`` with every reading each Chinese character may take instead of the one read in
    context (an English word: an empty set, a break)."""
    known = syllable_set()
    out: list[frozenset[str]] = []
    tokens = sorted([(m.start(), m.end(), True) for m in _HAN_RUN.finditer(text)] +
                    [(m.start(), m.end(), False) for m in _LATIN_WORD.finditer(text)])
    for start, end, han in tokens:
        if han:
            out += [_readings(c) for c in text[start:end]]
        else:
            out += [frozenset((p,)) for p in _split(text[start:end], known)] or [frozenset()]
    return out


def _split(word: str, known: frozenset[str]) -> list[str]:
    """``word`` as the fewest pinyin syllables that spell all of it, or [] when none do."""
    if word in known:
        return [word]
    if len(word) > 60:
        return []
    best: list[list[str] | None] = [[]] + [None] * len(word)
    for end in range(1, len(word) + 1):
        for size in range(1, min(6, end) + 1):
            head = best[end - size]
            if head is not None and word[end - size:end] in known and \
                    (best[end] is None or len(head) + 1 < len(best[end])):
                best[end] = [*head, word[end - size:end]]
    return best[-1] or []


def _initial(s: str) -> str:
    return s[:2] if s.startswith(_INITIALS) else s[:1]


def _alike(found: list[str], term: list[str]) -> bool:
    """All syllables equal, or all but one, and that one with the same initial."""
    misses = [(a, b) for a, b in zip(found, term, strict=True) if a != b]
    return not misses or (len(misses) == 1 and _initial(misses[0][0]) == _initial(misses[0][1]))


class SoundIndex:
    """The pinyin of terms (``{term: normalised term}``) of ``MIN_SYLLABLES``+ Chinese characters."""

    def __init__(self, terms: list[str]):
        self.terms = {t: _pinyin(t) for t in terms
                      if len(t) >= MIN_SYLLABLES and re.fullmatch(f"[{HAN_CLASS}]+", t)}
        self._by_first: dict[str, list[str]] = {}
        for t, sounds in self.terms.items():  # a window is compared only with terms that could match it
            self._by_first.setdefault(sounds[0], []).append(t)
            self._by_first.setdefault(sounds[1], []).append(t)

    def could_match(self, text: str) -> bool:
        """False only when no term can sound like any part of ``text``: no run of a term's length reads like
        it by ``_alike``'s rule with any reading of its characters (Latin pinyin as ``syllables`` spells it;
        separators not required to join). Reading a passage aloud (pypinyin's phrase segmentation) costs
        ~3 ms; this looks characters up one by one, so the many clean passages skip it."""
        readings = _reading_sets(text)
        for i in range(len(readings)):
            candidates = {t for r in readings[i] for t in self._by_first.get(r, ())}
            if i + 1 < len(readings):
                candidates |= {t for r in readings[i + 1] for t in self._by_first.get(r, ())}
            for term in candidates:
                sounds = self.terms[term]
                if i + len(sounds) > len(readings):
                    continue
                misses = [k for k, s in enumerate(sounds) if s not in readings[i + k]]
                if not misses or (len(misses) == 1 and any(
                        _initial(r) == _initial(sounds[misses[0]]) for r in readings[i + misses[0]])):
                    return True
        return False

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """(term, start, end) of every place ``text`` sounds like a term (spans in ``text``)."""
        if not self.terms or not self.could_match(text):
            return []
        return self.find_read(text)

    def find_read(self, text: str) -> list[tuple[str, int, int]]:
        """``find`` without ``could_match`` first: every text read aloud in context."""
        if not self.terms:
            return []
        seq = syllables(text)
        out: list[tuple[str, int, int]] = []
        for i, syl in enumerate(seq):
            if not syl.sound:
                continue
            candidates = set(self._by_first.get(syl.sound, ()))
            if i + 1 < len(seq):
                candidates |= set(self._by_first.get(seq[i + 1].sound, ()))
            for term in candidates:
                sounds = self.terms[term]
                window = seq[i:i + len(sounds)]
                if len(window) == len(sounds) and all(w.sound and (k == 0 or w.joined) for k, w in
                                                      enumerate(window)) and \
                        _alike([w.sound for w in window], sounds):
                    out.append((term, window[0].start, window[-1].end))
        return out
