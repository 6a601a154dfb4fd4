"""LLM-generated keyphrases ("KeyLLM"): used when the caller passes an LLM, skipped otherwise.

``ingest`` does not import ``service`` (dependency direction), so the LLM comes in as a plain
callable ``generate(messages) -> str`` (OpenAI-style message dicts), which service/llm backends
provide. The prompt is ``prompts/keyphrases.j2``. A failing LLM never fails ingestion: the
statistical keyphrases stay and the error is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from docqa.resources import prompts_dir

log = logging.getLogger(__name__)
Generate = Callable[[list[dict]], str]
PROMPT = prompts_dir() / "keyphrases.j2"
_SPLIT = re.compile(r"[\n,，、;；]+")
MAX_PHRASE_CHARS = 24


def render_messages(text: str, top_n: int, candidates: list[str]) -> list[dict]:
    """The chat messages asking for ``top_n`` keyphrases of ``text`` (candidates as hints)."""
    import jinja2

    if not PROMPT.is_file():
        raise FileNotFoundError(f"keyphrase prompt missing: {PROMPT}")
    tpl = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(
        PROMPT.read_text(encoding="utf-8"))
    return [{"role": "user", "content": tpl.render(text=text, top_n=top_n, candidates=candidates)}]


def parse_phrases(reply: str, top_n: int) -> list[str]:
    """Phrases from a reply of one phrase per line (bullets, numbers and quotes stripped)."""
    out: list[str] = []
    for raw in _SPLIT.split(reply):
        p = re.sub(r"^\s*(?:[-*•]|\d+[.)、])\s*", "", raw).strip(" \t\"'“”‘’《》。.")
        if p and len(p) <= MAX_PHRASE_CHARS and p not in out:
            out.append(p)
    return out[:top_n]


def llm_keyphrases(texts: list[str], generate: Generate | None, top_n: int,
                   candidates: list[list[str]] | None = None) -> list[list[str]] | None:
    """Keyphrases per text from the LLM, or None when no LLM is given or it fails."""
    if generate is None or top_n <= 0:
        return None
    out = []
    try:
        for i, t in enumerate(texts):
            hints = candidates[i] if candidates else []
            out.append(parse_phrases(generate(render_messages(t, top_n, hints)), top_n))
    except Exception as e:  # an LLM outage must not stop ingestion; statistical phrases remain
        log.warning("LLM keyphrases skipped: %s: %s", type(e).__name__, e)
        return None
    return out
