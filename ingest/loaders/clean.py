"""Text clean-up every loader applies: odd spaces, zero-width characters, Unicode line breaks, and lines
wrapped inside a paragraph joined back (no space next to CJK text, "infor-"/"mation" rejoined).

Deliberately light: no NFKC (full-width punctuation is kept), but ``\\u3000``/``\\xa0`` and other odd
spaces become plain spaces and runs of spaces collapse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from docqa.text.language import joins_without_space

# Odd spaces (ideographic, no-break, en/em/thin...) become a plain space; zero-width ones vanish.
_SPACES = re.compile(r"[ \t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
# Unicode line breaks that str.split("\n") would not see: treat them as newlines inside text.
_LINE_BREAKS = re.compile(r"\r\n|[\r\u0085\u2028\u2029]")


def normalize_newlines(text: str) -> str:
    """\\r\\n, \\r, U+0085, U+2028 and U+2029 all become \\n."""
    return _LINE_BREAKS.sub("\n", text)


def clean_line(text: str) -> str:
    """One line: odd spaces to ' ', runs collapsed, zero-width characters dropped, stripped."""
    return _SPACES.sub(" ", _ZERO_WIDTH.sub("", text)).strip()


def join_lines(lines: Iterable[str]) -> str:
    """Join lines that were wrapped inside one paragraph.

    Chinese/Japanese text is written without spaces, so a break next to a CJK character is joined
    with nothing; Latin text gets one space, and an end-of-line hyphen before a lower-case letter is
    treated as a word split ("infor-" + "mation").
    """
    out = ""
    for raw in lines:
        line = clean_line(raw)
        if not line:
            continue
        if not out:
            out = line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[0].islower():
            out = out[:-1] + line
        elif joins_without_space(out, line):
            out += line
        else:
            out += " " + line
    return out


def clean_inline(text: str) -> str:
    """A paragraph or heading as one line (internal line breaks joined with ``join_lines``)."""
    return join_lines(normalize_newlines(text).split("\n"))


def clean_code(text: str) -> str:
    """A code block: keep line structure and indentation, drop trailing spaces and blank edges."""
    lines = [_ZERO_WIDTH.sub("", ln).rstrip() for ln in normalize_newlines(text).split("\n")]
    return "\n".join(lines).strip("\n")
