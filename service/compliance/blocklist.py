"""The blocklist: terms and regular expressions that must never reach a user; a hit means fallback.

Two files in the compliance directory (prompts/compliance/README.md):

- ``blocklist.txt``: one term a line. Chinese terms are matched in the text with all whitespace
  removed ("稳 赚 不 赔" is still 稳赚不赔); terms in Latin script match whole words in the text with
  whitespace collapsed ("guaranteed   returns"). Both after NFKC (full-width letters and digits
  become ASCII) and case folding.
- ``blocklist_regex.txt``: one Python regex a line, searched case-insensitively in the NFKC,
  whitespace-collapsed text. Pick a regex when wording varies ("保证您的本金安全" / "承诺收益");
  a term when it does not.

Terms are compiled into one alternation per view, so a check is two or three regex scans whatever
the list length.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

TERMS_FILE = "blocklist.txt"
REGEX_FILE = "blocklist_regex.txt"
_WS = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u200b-\u200d\u2060\ufeff\u00ad]")  # zero-width characters used to split words
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff]")


class BlocklistError(ValueError):
    """A blocklist file that cannot be used (bad regex); names the file and line."""


@dataclass(frozen=True)
class BlockHit:
    """What matched: ``rule`` is the term or the regex source, ``match`` the text it matched."""

    kind: str  # "term" | "regex"
    rule: str
    match: str

    def describe(self) -> str:
        return f"blocklist {self.kind} {self.rule!r} matched {self.match!r}"


def normalize(text: str) -> str:
    """NFKC, case-folded, zero-width characters removed: the form every rule is matched in."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()


def _rule_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    return [(i, line.strip()) for i, line in enumerate(text.split("\n"), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


class Blocklist:
    """Compiled blocklist rules. ``Blocklist.load(dir)`` reads the two files; ``find(text)`` returns
    the first hit or None."""

    def __init__(self, terms: list[str], patterns: list[str], *, source: str = "<memory>"):
        self.terms = [normalize(t) for t in terms if t.strip()]
        self.patterns = patterns
        cjk = sorted({_WS.sub("", t) for t in self.terms if _CJK.search(t)}, key=len, reverse=True)
        latin = sorted({_WS.sub(" ", t) for t in self.terms if not _CJK.search(t)}, key=len, reverse=True)
        self._cjk = re.compile("|".join(map(re.escape, cjk))) if cjk else None
        self._latin = (re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, latin)) + r")(?!\w)")
                       if latin else None)
        self._regexes: list[re.Pattern] = []
        for i, p in enumerate(patterns, start=1):
            try:
                self._regexes.append(re.compile(p, re.IGNORECASE))
            except re.error as e:
                raise BlocklistError(f"{source}: rule {i} {p!r} is not a valid regular expression: {e}") from None

    @classmethod
    def load(cls, directory: Path) -> Blocklist:
        regex_path = directory / REGEX_FILE
        try:
            return cls([t for _, t in _rule_lines(directory / TERMS_FILE)],
                       [p for _, p in _rule_lines(regex_path)], source=str(regex_path))
        except UnicodeDecodeError as e:
            raise BlocklistError(f"{directory}: blocklist files must be UTF-8 ({e})") from None

    def __len__(self) -> int:
        return len(self.terms) + len(self._regexes)

    def find(self, text: str) -> BlockHit | None:
        """The first rule ``text`` breaks, or None. Terms are checked before regexes."""
        norm = normalize(text)
        spaced = _WS.sub(" ", norm)
        if self._cjk is not None:
            m = self._cjk.search(_WS.sub("", norm))
            if m:
                return BlockHit("term", m.group(0), m.group(0))
        if self._latin is not None:
            m = self._latin.search(spaced)
            if m:
                return BlockHit("term", m.group(0), m.group(0))
        for rx in self._regexes:
            m = rx.search(spaced)
            if m:
                return BlockHit("regex", rx.pattern, m.group(0))
        return None
