"""The blocklist: terms and regular expressions that must never reach a user.

Two files in the compliance directory (prompts/compliance/README.md):

- ``blocklist.txt``: one term a line, optionally with aliases after ``|`` that count as the same term
  (pinyin initials a community uses for it: ``稳赚不赔 | wzbp``). Terms in Chinese match anywhere;
  terms in Latin script match whole words.
- ``blocklist_regex.txt``: one Python regex a line, searched case-insensitively. Pick a regex when
  wording varies ("保证您的本金安全" / "承诺收益"); a term when it does not.

A term right after a negation ("不保证收益", "no guaranteed returns") is a disclaimer and passes.
Chinese terms of four or more characters also match with one character slipped in, reversed, and by
sound (``docqa.screening.sounds``: homophones, pinyin, one near-miss syllable).

Rules and text both go through ``docqa.screening.normalize`` (traditional -> simplified, full-width,
case, zero-width characters and separators between Chinese characters), so "稳-赚-不-赔", "穩賺不賠"
and "保·本·保·息" are caught, and a hit's ``start``/``end`` are offsets in the ORIGINAL text, so a
caller can redact exactly the matched span. Terms are compiled into one alternation per script, so a
check is two regex scans plus one per regex rule, whatever the list length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from docqa.errors import UserError
from docqa.screening.negation import negated
from docqa.screening.normalize import Normalized, normalize
from docqa.screening.sounds import SoundIndex
from docqa.text.language import HAN_CLASS, has_han

TERMS_FILE = "blocklist.txt"
REGEX_FILE = "blocklist_regex.txt"


MIN_VARIANT_CHARS = 4  # terms this long also match reversed or with one character slipped in
NEGATORS = "[不没无非未别莫勿否]"  # a character slipped in that negates is not the claim


class BlocklistError(UserError):
    """A blocklist file that cannot be used (bad regex); names the file and line."""


@dataclass(frozen=True)
class BlockHit:
    """What matched: ``rule`` is the term (its first spelling) or the regex source, ``match`` the
    original text it matched, at ``start:end`` of the text checked."""

    kind: str  # "term" | "regex"
    rule: str
    match: str
    start: int = 0
    end: int = 0

    def describe(self) -> str:
        return f"blocklist {self.kind} {self.rule!r} matched {self.match!r}"


def _rule_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    return [(i, line.strip()) for i, line in enumerate(text.split("\n"), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


class Blocklist:
    """Compiled blocklist rules. ``Blocklist.load(dir)`` reads the two files; ``find(text)`` returns
    the first hit or None, ``find_all(text)`` every non-overlapping hit."""

    def __init__(self, terms: list[str], patterns: list[str], *, source: str = "<memory>",
                 lines: list[int] | None = None):
        self.rule_of: dict[str, str] = {}  # normalised spelling -> the term as listed (first spelling)
        for line in terms:
            spellings = [s.strip() for s in line.split("|") if s.strip()]
            for s in spellings:
                norm = normalize(s).text
                if norm:
                    self.rule_of.setdefault(norm, spellings[0])
        self.terms = list(self.rule_of)
        self.patterns = patterns
        cjk = sorted((t for t in self.terms if has_han(t)), key=len, reverse=True)
        latin = sorted((t for t in self.terms if not has_han(t)), key=len, reverse=True)
        self._cjk = re.compile("|".join(map(re.escape, cjk))) if cjk else None
        # a claim of 4+ characters still reads as that claim with one character slipped in ("保本又保息") or
        # written backwards ("赔不赚稳"): each variant maps back to its term
        self._variant_of: dict[str, str] = {}
        variants: list[str] = []
        for t in (t for t in cjk if len(t) >= MIN_VARIANT_CHARS and re.fullmatch(f"[{HAN_CLASS}]+", t)):
            # ... but not a negation: "不保本不保息" is the disclaimer, not the claim
            variants += [re.escape(t[:i]) + f"(?!{NEGATORS})[{HAN_CLASS}]" + re.escape(t[i:]) for i in range(1, len(t))]
            variants.append(re.escape(t[::-1]))
            self._variant_of[t[::-1]] = t
        self._cjk_variants = re.compile("|".join(variants)) if variants else None
        # ... and read aloud: homophones, pinyin, one near-miss syllable ("稳转不赔", "wen zhuan bu pei", "稳挣不赔")
        self._sounds = SoundIndex(cjk)
        # whole words against Latin letters and digits only: "本产品wzbp哦" is a hit (Chinese is \w to re)
        self._latin = (re.compile(r"(?<![0-9a-z])(?:" + "|".join(map(re.escape, latin)) + r")(?![0-9a-z])")
                       if latin else None)
        self._regexes: list[re.Pattern] = []
        for i, p in enumerate(patterns, start=1):
            try:
                self._regexes.append(re.compile(p, re.IGNORECASE))
            except re.error as e:
                where = f"line {lines[i - 1]}" if lines else f"rule {i}"
                raise BlocklistError(f"{source}, {where}: {p!r} is not a valid regular expression: {e}") from None

    @classmethod
    def load(cls, directory: Path) -> Blocklist:
        regex_path = directory / REGEX_FILE
        try:
            rules = _rule_lines(regex_path)
            return cls([t for _, t in _rule_lines(directory / TERMS_FILE)], [p for _, p in rules],
                       source=str(regex_path), lines=[n for n, _ in rules])
        except UnicodeDecodeError as e:
            raise BlocklistError(f"{directory}: blocklist files must be UTF-8 ({e})") from None

    def __len__(self) -> int:
        return len(self.terms) + len(self._regexes)

    def _hits(self, text: str, norm: Normalized, first_only: bool) -> list[BlockHit]:
        out: list[BlockHit] = []
        for kind, rx in (("term", self._cjk), ("term", self._latin), ("variant", self._cjk_variants),
                         *(("regex", r) for r in self._regexes)):
            if rx is None:
                continue
            for m in rx.finditer(norm.text):
                if negated(norm.text, m.start()):
                    continue
                start, end = norm.span(m.start(), m.end())
                if kind == "variant":
                    rule, kind_ = self.rule_of.get(self._term_of_variant(m.group(0)), m.group(0)), "term"
                else:
                    rule, kind_ = (self.rule_of.get(m.group(0), m.group(0)) if kind == "term" else rx.pattern), kind
                out.append(BlockHit(kind_, rule, text[start:end], start, end))
                if first_only:
                    return out
        for term, s, e in self._sounds.find(norm.text):
            if negated(norm.text, s):
                continue
            start, end = norm.span(s, e)
            out.append(BlockHit("term", self.rule_of.get(term, term), text[start:end], start, end))
            if first_only:
                return out
        return out

    def _term_of_variant(self, found: str) -> str:
        """The term a variant match stands for: reversed, or with one character slipped in."""
        if found in self._variant_of:
            return self._variant_of[found]
        for i in range(1, len(found) - 1):
            if found[:i] + found[i + 1:] in self.rule_of:
                return found[:i] + found[i + 1:]
        return found

    def find(self, text: str) -> BlockHit | None:
        """The first rule ``text`` breaks, or None. Terms are checked before regexes."""
        if not text:
            return None
        hits = self._hits(text, normalize(text), True)
        return hits[0] if hits else None

    def find_all(self, text: str) -> list[BlockHit]:
        """Every hit, in text order, overlaps merged into the earliest."""
        if not text:
            return []
        hits = sorted(self._hits(text, normalize(text), False), key=lambda h: (h.start, -h.end))
        out: list[BlockHit] = []
        for h in hits:
            if out and h.start < out[-1].end:
                if h.end > out[-1].end:
                    last = out[-1]
                    out[-1] = BlockHit(last.kind, last.rule, text[last.start:h.end], last.start, h.end)
                continue
            out.append(h)
        return out
