"""Level-1 key information of units: heading path + keyphrases (+ named entities, + LLM phrases).

``keyinfo_text`` is the one format every level uses: ``"<heading path> | phrase, phrase, ..."``.
"""

from __future__ import annotations

from docqa.text.language import Lang, lang_of
from ingest.keyinfo.keyphrases import MAIN_SHARE, Keyphraser, candidates
from ingest.keyinfo.llm import llm_keyphrases


def keyinfo_text(heading: str, phrases: list[str]) -> str:
    """Key info string of a unit: its heading path, then its phrases."""
    sep = "、" if any(lang_of(p, min_share=MAIN_SHARE) is Lang.ZH for p in phrases) else ", "
    body = sep.join(phrases)
    if heading and body:
        return f"{heading} | {body}"
    return heading or body


__all__ = ["Keyphraser", "candidates", "keyinfo_text", "llm_keyphrases"]
