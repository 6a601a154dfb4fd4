"""What the reader reads: a question and a window of one passage, as one token sequence.

``<s> question </s></s> passage window </s>`` (the XLM-R pair layout of the e5 tokenizer), at most
``max_length`` tokens. A passage longer than the room left by the question is cut into overlapping
windows (``stride``: the share of a window the next one starts after), each keeping every token's
character offsets in the passage, so a span the model picks maps back to the exact characters of
the passage. Training (finetune/reader) and serving (service/answering/reading.py) build windows
here, so the model reads in serving exactly the layout it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_LENGTH = 192  # tokens per training window, question included; serving reads reader_window_tokens (128)
MAX_QUESTION_TOKENS = 48
CLS, PAD, SEP = 0, 1, 2  # <s> <pad> </s> of the e5 (XLM-R) vocabulary


@dataclass
class Window:
    passage: int  # index of the passage in the caller's list
    ids: list[int]  # <s> q </s></s> p </s>
    first: int  # index in ids of the window's first passage token
    offsets: list[tuple[int, int]]  # character range in the passage of each passage token of the window
    text_start: int  # the window's character range in the passage
    text_end: int

    @property
    def last(self) -> int:
        """Index in ids of the window's last passage token."""
        return self.first + len(self.offsets) - 1

    def token_span(self, start_char: int, end_char: int) -> tuple[int, int] | None:
        """The (first, last) indices in ``ids`` of the tokens covering characters [start_char, end_char)
        of the passage, or None when the window does not hold all of them."""
        if start_char < self.text_start or end_char > self.text_end:
            return None
        s = e = None
        for i, (a, b) in enumerate(self.offsets):
            if s is None and b > start_char:
                s = i
            if a < end_char:
                e = i
        if s is None or e is None or e < s:
            return None
        return self.first + s, self.first + e


class Tokens:
    """The encoder's tokenizer (``tokenizer.json`` of the e5 folder), with character offsets."""

    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()

    def question(self, text: str) -> list[int]:
        """The question's tokens; a longer one keeps its end (a follow-up joined after the previous turn)."""
        return self.tok.encode(text.strip(), add_special_tokens=False).ids[-MAX_QUESTION_TOKENS:]

    def passage(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tok.encode(text, add_special_tokens=False)
        return list(enc.ids), [_trim(text, a, b) for a, b in enc.offsets]


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    """A token's offsets without the leading space Metaspace tokens carry ("▁world" covers " world")."""
    while a < b and text[a].isspace():
        a += 1
    return a, b


def room(question_ids: list[int], max_length: int = MAX_LENGTH) -> int:
    """Passage tokens that fit beside the question in one window."""
    return max_length - len(question_ids) - 4


def windows(question_ids: list[int], passage_ids: list[int], offsets: list[tuple[int, int]], passage: int = 0,
            max_length: int = MAX_LENGTH, stride: float = 0.5) -> list[Window]:
    """Every window of the passage: overlapping by ``1 - stride`` of a window, the last one ending at the
    passage's end. One window when the passage fits."""
    n = room(question_ids, max_length)
    if not passage_ids:
        return []
    starts = list(range(0, max(len(passage_ids) - n, 0) + 1, max(1, int(n * stride))))
    if starts[-1] + n < len(passage_ids):
        starts.append(len(passage_ids) - n)
    return [window_at(question_ids, passage_ids, offsets, s, n, passage) for s in starts]


def window_at(question_ids: list[int], passage_ids: list[int], offsets: list[tuple[int, int]], start: int,
              length: int, passage: int = 0) -> Window:
    """The window of ``length`` passage tokens from token ``start``."""
    p = passage_ids[start:start + length]
    offs = offsets[start:start + length]
    ids = [CLS, *question_ids, SEP, SEP, *p, SEP]
    return Window(passage, ids, len(question_ids) + 3, offs, offs[0][0] if offs else 0, offs[-1][1] if offs else 0)


def batch(wins: list[Window]):
    """(input_ids, attention_mask) int64 arrays, padded to the longest window."""
    import numpy as np

    width = max(len(w.ids) for w in wins)
    ids = np.full((len(wins), width), PAD, dtype=np.int64)
    mask = np.zeros((len(wins), width), dtype=np.int64)
    for i, w in enumerate(wins):
        ids[i, :len(w.ids)] = w.ids
        mask[i, :len(w.ids)] = 1
    return ids, mask
