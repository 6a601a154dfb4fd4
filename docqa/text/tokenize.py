"""Keyword tokens: one function, used identically at index time and at query time.

Text is NFKC-normalised first, so full-width "ＡＢＣ１２３" (common in Chinese documents) and
"ABC123" are the same term. Chinese goes through jieba's search-mode cut (words plus their
sub-words, so "订立劳动合同" matches both "劳动合同" and "劳动"); other scripts are lower-cased
and split into words and numbers (letters with accents stay in their word: "café"). Tokens
that are pure punctuation or stopwords are dropped. Both the embedded tantivy engine and
Elasticsearch receive these tokens pre-joined by spaces and index them with a whitespace analyzer,
so the two engines see exactly the same terms.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

from docqa.text.language import HAN, HAN_CLASS

# a run of CJK ideographs, or a word of any other script: letters/digits (not '_', not CJK) joined
# by . ' - ("e.g", "notice-period", "3.5")
_W = rf"[^\W_{HAN_CLASS}]"
_WORD = re.compile(rf"{_W}+(?:[.'-]{_W}+)*|[{HAN_CLASS}]+")
_LATIN_RUN = re.compile(rf"{_W}+")

STOPWORDS = frozenset(
    """的 了 和 与 及 或 是 在 有 为 对 等 被 把 也 就 都 而 及其 之 其 该 此 这 那 个 中 上 下 以 于 由 从 向
    吗 呢 吧 啊 么 什么 哪些 哪个 怎么 怎样 如何 多少 几 请问 请 是否 能否 可以 应当 应该 需要
    a an the of to in on for and or is are was were be been by with as at from that this it its
    what which who whom how when where why do does did can could should would will shall may
    """.split()
)

_jieba_lock = threading.Lock()
_jieba = None


def _get_jieba():
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import logging

                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def tokenize(text: str) -> list[str]:
    """Keyword tokens of ``text`` in order (duplicates kept: term frequency matters to BM25)."""
    out: list[str] = []
    for m in _WORD.finditer(unicodedata.normalize("NFKC", text)):
        piece = m.group(0)
        if HAN.match(piece):
            out.extend(t for t in _cut_cjk(piece) if t not in STOPWORDS)
        else:
            low = piece.lower()
            if low not in STOPWORDS:
                out.append(low)
    return out


@lru_cache(maxsize=65536)
def _cut_cjk(run: str) -> tuple[str, ...]:
    return tuple(_get_jieba().lcut_for_search(run))


def query_terms(text: str) -> list[str]:
    """Distinct tokens of a query, in first-seen order."""
    return list(dict.fromkeys(tokenize(text)))


def count_tokens(text: str) -> int:
    """Cheap length estimate in model tokens: one per CJK character, ~1.3 per Latin word.

    Chunk limits are set in these units. WordPiece/BPE tokenizers give one token per CJK
    character and 1-1.5 per English word, so this tracks the embedder's real length closely
    without loading a tokenizer in the hot path of chunking.
    """
    cjk = len(HAN.findall(text))
    latin = len(_LATIN_RUN.findall(text))  # any non-CJK word, full-width "２０１９" included
    return cjk + (latin * 13 + 9) // 10
