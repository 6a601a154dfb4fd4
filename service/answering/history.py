"""Multi-turn: keep the newest history that fits a token budget, and turn a follow-up question into
a standalone query for retrieval.

Retrieval sees one query, so "那试用期呢？" must become "劳动合同期限一年的，试用期最长多久？":
- with an LLM backend the ``condense_{zh,en}.j2`` prompt rewrites it (greedy, short output);
  a condensation that fails, comes back empty or runs on far longer than the dialogue is ignored;
- without one (extractive, or when the LLM is down) a short follow-up is joined with the previous
  user turn, which carries the subject in most real follow-ups.
"""

from __future__ import annotations

import re

from docqa.text.tokenize import count_tokens
from service.llm.base import LLM, GenParams, LLMError

FOLLOW_UP_MAX_CHARS = 40  # longer questions are taken to be standalone already (extractive join)
CONDENSE_MAX_TOKENS = 96
_LABEL = re.compile(r"^(独立问题|改写后的问题|问题|standalone question|rewritten question|question)\s*[:：]\s*", re.I)


def truncate_history(history: list[dict] | None, budget: int) -> list[dict]:
    """The newest user/assistant turns whose total estimated tokens fit ``budget``, oldest first.

    Older turns go first: the follow-up refers to what was just said. A turn is kept whole or not at
    all, and an assistant turn left without the user turn before it is dropped too."""
    turns = [{"role": t["role"], "content": t["content"]} for t in history or []
             if t.get("role") in ("user", "assistant") and (t.get("content") or "").strip()]
    kept: list[dict] = []
    used = 0
    for t in reversed(turns):
        cost = count_tokens(t["content"]) + 4  # role markers
        if used + cost > budget:
            break
        kept.append(t)
        used += cost
    kept.reverse()
    while kept and kept[0]["role"] == "assistant":
        kept.pop(0)
    return kept


def joined_query(question: str, history: list[dict] | None) -> str:
    """Extractive follow-up handling: a short question is joined with the previous user turn."""
    prev = [m.get("content", "") for m in (history or []) if m.get("role") == "user" and m.get("content")]
    if prev and len(question) < FOLLOW_UP_MAX_CHARS:
        return f"{prev[-1]} {question}"
    return question


def condense(llm: LLM, prompts, question: str, history: list[dict], params: GenParams) -> str:
    """A standalone version of ``question`` written by the LLM; ``question`` itself when there is no
    earlier user turn. Raises ``LLMError`` when the LLM fails (the caller falls back to joining)."""
    if not any(t["role"] == "user" for t in history):
        return question
    messages = prompts.condense_messages(question, history)
    p = GenParams(temperature=0.0, top_p=1.0, max_tokens=CONDENSE_MAX_TOKENS,
                  repetition_penalty=params.repetition_penalty, no_repeat_ngram_size=params.no_repeat_ngram_size)
    text = llm.generate(messages, p)
    out = clean_condensed(text)
    context = question + "".join(t["content"] for t in history if t["role"] == "user")
    if not out or len(out) > 2 * len(context) + 20:
        raise LLMError(f"the condensed question is unusable: {text[:100]!r}")
    return out


def clean_condensed(text: str) -> str:
    """The first non-empty line, without a "独立问题：" label or wrapping quotes."""
    for line in text.strip().splitlines():
        quotes = "\"'“”「」"
        line = _LABEL.sub("", line.strip().strip(quotes).strip()).strip().strip(quotes).strip()
        if line:
            return line
    return ""
