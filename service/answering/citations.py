"""[n] citations in an LLM's answer: normalised, checked against the passages given, collected.

LLMs write citations as ``[1]``, ``[1, 2]``, ``[1][2]``, ``【1】`` or ``［1］``. ``CitationFilter``
rewrites each to ``[n]`` markers, drops numbers that point at no passage that was given (a model
inventing ``[7]`` when it saw five passages), and records which passages were cited. It works on a
stream: text outside a bracket passes through at once, a bracket is held only until it closes
(at most a few characters), so streaming stays live.
"""

from __future__ import annotations

from docqa.search import Hit
from docqa.text.citations import CLOSE, OPEN, RAW_BODY, RAW_PARTIAL, marker_numbers
from docqa.text.coverage import content_terms, coverage

MAX_MARKER = 24
MIN_ATTRIBUTION = 0.3  # share of the answer's content terms a passage must hold to be cited for it

class CitationFilter:
    """Feed text in pieces; get it back with citation markers normalised and unknown ones removed."""

    def __init__(self, n_passages: int):
        self.n_passages = n_passages
        self.cited: list[int] = []  # passage numbers in order of first citation
        self._buf = ""

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if not self._buf:
                if ch in OPEN:
                    self._buf = ch
                else:
                    out.append(ch)
                continue
            self._buf += ch
            if ch in CLOSE:
                out.append(self._resolve(self._buf))
                self._buf = ""
            elif not RAW_PARTIAL.fullmatch(self._buf[1:]) or len(self._buf) > MAX_MARKER:
                held, self._buf = self._buf, ""
                if held[-1] in OPEN:  # "[[1]": the last bracket may open a real marker
                    held, self._buf = held[:-1], held[-1]
                out.append(held)
        return "".join(out)

    def flush(self) -> str:
        """What is still held at the end of the text (an unclosed bracket), as it was."""
        held, self._buf = self._buf, ""
        return held

    def _resolve(self, marker: str) -> str:
        body = marker[1:-1]
        if not RAW_BODY.fullmatch(body):
            return marker  # "[注]", "[a]": not a citation, leave it
        nums = marker_numbers(body)
        keep = [n for n in nums if 1 <= n <= self.n_passages]
        for n in keep:
            if n not in self.cited:
                self.cited.append(n)
        return "".join(f"[{n}]" for n in dict.fromkeys(keep))


def filter_citations(text: str, n_passages: int) -> tuple[str, list[int]]:
    """The whole-text form of ``CitationFilter``: (clean text, cited passage numbers)."""
    f = CitationFilter(n_passages)
    clean = f.feed(text) + f.flush()
    return clean, f.cited


def attribute(answer: str, passages: list[Hit]) -> int | None:
    """The passage (1-based) an uncited answer most plausibly comes from, or None.

    Small models often ignore the instruction to cite. The passage holding the largest share of the
    answer's content terms is cited for it, when that share is at least ``MIN_ATTRIBUTION``."""
    terms = content_terms(answer)
    if not terms or not passages:
        return None
    shares = [coverage(terms, p.text) for p in passages]
    best = max(range(len(shares)), key=lambda i: shares[i])
    return best + 1 if shares[best] >= MIN_ATTRIBUTION else None
