"""Where the data docqa ships with its code lives: the prompts folder (templates, approved and fallback
replies, blocklists). One rule for every caller, installed or in a checkout: ``docqa/prompts`` is a link
to the repository's ``prompts/`` folder, and the wheel carries its files as package data."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def prompts_dir() -> Path:
    """The bundled ``prompts/`` folder (a KB's ``prompts_dir`` setting overrides templates from it)."""
    return Path(str(files("docqa") / "prompts"))
