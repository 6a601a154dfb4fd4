"""Fallback replies: what the user gets instead of a draft that failed the filter.

``fallbacks.yaml`` holds one reply per dialogue stage and a universal one, each in Chinese and
English (prompts/compliance/README.md). The stage's reply is preferred because it fits the
conversation (a complaint gets "your concern has been recorded", not "I cannot answer"); the
universal reply covers requests with no stage or a stage the file does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from docqa.errors import UserError
from docqa.text.language import Lang

FALLBACKS_FILE = "fallbacks.yaml"


class FallbackError(UserError):
    """A fallbacks file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Fallback:
    text: str
    stage: str | None  # None: the universal fallback


@dataclass
class Fallbacks:
    universal: dict[Lang, str]
    stages: dict[str, dict[Lang, str]] = field(default_factory=dict)
    # stages whose questions are never answered from the documents: the stage's fallback at once,
    # without retrieval or LLM (a front end's dialogue manager marks e.g. out_of_scope, handoff)
    forbidden_stages: frozenset[str] = frozenset()

    @classmethod
    def load(cls, directory: Path) -> Fallbacks:
        import yaml

        path = directory / FALLBACKS_FILE
        if not path.is_file():
            raise FallbackError(f"{path}: missing; the compliance filter needs at least a universal fallback")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise FallbackError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict) or "universal" not in data:
            raise FallbackError(f"{path}: expected a mapping with a 'universal' entry (and optional 'stages')")
        stages = data.get("stages") or {}
        if not isinstance(stages, dict):
            raise FallbackError(f"{path}: 'stages' must map stage names to {{zh, en}} replies")
        forbidden = data.get("forbidden_stages") or []
        if not isinstance(forbidden, list) or not all(isinstance(x, str) for x in forbidden):
            raise FallbackError(f"{path}: 'forbidden_stages' must be a list of stage names")
        return cls(universal=_pair(data["universal"], f"{path}: universal"),
                   stages={str(k): _pair(v, f"{path}: stages.{k}") for k, v in stages.items()},
                   forbidden_stages=frozenset(forbidden))

    def pick(self, stage: str | None, lang: Lang) -> Fallback:
        """The stage's fallback in ``lang`` if the file has one, else the universal one."""
        if stage and stage in self.stages:
            return Fallback(self.stages[stage][lang], stage)
        return Fallback(self.universal[lang], None)

    def texts(self) -> list[tuple[str, str]]:
        """(where, text) of every reply, for checks such as "no fallback is blocklisted"."""
        out = [(f"universal.{lang.value}", t) for lang, t in self.universal.items()]
        for st, pair in self.stages.items():
            out.extend((f"stages.{st}.{lang.value}", t) for lang, t in pair.items())
        return out


def _pair(value, where: str) -> dict[Lang, str]:
    if not isinstance(value, dict):
        raise FallbackError(f"{where}: expected {{zh: ..., en: ...}}, got {type(value).__name__}")
    out = {}
    for lang in Lang:
        text = value.get(lang.value)
        if not isinstance(text, str) or not text.strip():
            raise FallbackError(f"{where}: missing a non-empty '{lang.value}' reply")
        out[lang] = text.strip()
    return out
