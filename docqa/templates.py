"""Prompt templates: Jinja2 files in ``prompts/`` (data, not code), overridable per KB.

A KB's ``prompts_dir`` (setting, or ``kb_llm`` override) is searched first, then the bundled
``prompts/``; so a KB can replace just ``qa_zh.j2`` and keep the rest. Templates are rendered in a
sandbox (a template from a customer's directory cannot reach Python objects) with
``StrictUndefined`` (a misspelt variable is an error, not an empty string).

Templates and their variables:
- ``qa_{zh,en}.j2``: ``question``, ``passages`` (list of ``{n, title, text, flagged}``; ``flagged``: the
  passage screened as instruction-like or holding secrets) -> the user message;
- ``condense_{zh,en}.j2``: ``question``, ``history`` (list of ``{role, content}``) -> the user message;
- ``keyphrases.j2``: used by ingestion (see ingest/).
The language is the question's: Chinese when it contains a CJK character, else English.
"""

from __future__ import annotations

import functools
from pathlib import Path

from docqa.errors import UserError
from docqa.resources import prompts_dir
from docqa.text.language import Lang, lang_of

DEFAULT_DIR = prompts_dir()


class PromptError(UserError):
    """A template is missing or broken; the message names the file and line."""


class Prompts:
    """The templates of one prompts directory (plus the bundled defaults)."""

    def __init__(self, override_dir: Path | None = None):
        from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        dirs = [Path(override_dir).expanduser()] if override_dir else []
        for d in dirs:
            if not d.is_dir():
                raise PromptError(f"prompts_dir {str(d)!r} is not a directory")
        if not DEFAULT_DIR.is_dir():
            raise PromptError(f"the bundled prompts directory {DEFAULT_DIR} is missing; reinstall docqa")
        self.dirs = [*dirs, DEFAULT_DIR]
        self.env = SandboxedEnvironment(loader=ChoiceLoader([FileSystemLoader(str(d)) for d in self.dirs]),
                                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                        keep_trailing_newline=False, autoescape=False)

    def render(self, name: str, **variables) -> str:
        """The template ``name`` rendered; ``PromptError`` with file and line when it fails."""
        from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError

        try:
            return self.env.get_template(name).render(**variables).strip()
        except TemplateNotFound:
            raise PromptError(f"prompt template {name!r} not found in {[str(d) for d in self.dirs]}") from None
        except TemplateSyntaxError as e:
            raise PromptError(f"prompt template {e.filename or name}, line {e.lineno}: {e.message}") from None
        except TemplateError as e:
            raise PromptError(f"prompt template {name!r} failed to render: {e}") from None

    def qa_messages(self, question: str, passages: list[dict], lang: Lang | None = None) -> list[dict]:
        """Chat messages asking the LLM to answer ``question`` from numbered ``passages``."""
        lang = lang or lang_of(question)
        return [{"role": "user", "content": self.render(f"qa_{lang}.j2", question=question, passages=passages)}]

    def condense_messages(self, question: str, history: list[dict], lang: Lang | None = None) -> list[dict]:
        """Chat messages asking the LLM to rewrite a follow-up as a standalone question."""
        lang = lang or lang_of(question)
        turns = [{"role": t["role"], "content": t["content"]} for t in history]
        return [{"role": "user", "content": self.render(f"condense_{lang}.j2", question=question, history=turns)}]


@functools.lru_cache(maxsize=32)
def prompts_for(override_dir: Path | None = None) -> Prompts:
    """One (cached) ``Prompts`` per directory; templates themselves are re-read when they change."""
    return Prompts(override_dir)
