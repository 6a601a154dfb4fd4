"""The sentences of a passage that the answerer scores as evidence: one rule for the answer path
(service/answering/extractive.py) and for the vectors ingestion stores for them (docqa/kb/evidence.py)."""

from __future__ import annotations

from docqa.text.sentences import split_sentences
from docqa.text.tables import is_markdown_table, row_sentences

MAX_SENTENCES_PER_PASSAGE = 40


def evidence_sentences(text: str) -> list[str]:
    """The sentences of a passage that are scored as evidence (the first ``MAX_SENTENCES_PER_PASSAGE``);
    a table's rows, each with its header ("函数名：WCHNET_Init；简要说明：库初始化"), so a quoted row
    says what its cells are."""
    if is_markdown_table(text):
        return row_sentences(text)[:MAX_SENTENCES_PER_PASSAGE]
    return [s for part in text.split("\n") for s in _clauses(part)][:MAX_SENTENCES_PER_PASSAGE]


def _clauses(text: str) -> list[str]:
    """Sentences, with a bare article label ("第十九条") kept on its first clause."""
    out: list[str] = []
    for s in split_sentences(text):
        if out and len(out[-1]) <= 8 and not out[-1].endswith(("。", "！", "？", "；", ".", "!", "?", ";")):
            out[-1] = f"{out[-1]} {s}"
        else:
            out.append(s)
    return out
