"""The OpenAPI schema of this deployment: FastAPI's, plus the rules that depend on settings and KBs.

A client (or a schema fuzzer) that sends a schema-valid request must not get a 422, so the schema
states every rule the server checks, including those pydantic models cannot know when they are
defined: the question-length limit (``max_question_chars``), that a server with several KBs (or none
yet) needs the request to name one, and the shape of an OpenAI message list docqa can answer (at
least one user message with text; a user message holds its text in one piece, within the limit).
Both variants (a KB to name or not) are built once from the cached base; which one is served follows
the KBs present, so a KB created later is reflected.
"""

from __future__ import annotations

import copy
import re

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

# Text with a character that is not whitespace (Python's ``\S``: what the server checks).
NOT_BLANK = r"\S"
_NOT_BLANK = re.compile(NOT_BLANK)
# A chat question: at least two characters that are not whitespace (one character asks nothing a reader
# can answer: "?", "税"); a search query may be one keyword, so it only needs NOT_BLANK.
QUESTION = r"\S[\s\S]*\S"
_QUESTION = re.compile(QUESTION)
# a user message of a conversation: blank (no text: skipped) or a question
USER_TEXT = r"^\s*$|" + QUESTION
MIN_QUESTION_CHARS = 2


def is_blank(text: str) -> bool:
    """The server's reading of the schema's ``pattern: \\S``."""
    return not _NOT_BLANK.search(text)


def too_short(text: str) -> bool:
    """Not blank, but fewer than two non-space characters: the schema's ``QUESTION`` pattern fails."""
    return not is_blank(text) and not _QUESTION.search(text)


def install(app: FastAPI, settings, registry) -> None:
    base: dict = {}
    built: dict[bool, dict] = {}  # the two schemas a deployment can have, built once each

    def openapi() -> dict:
        if not base:
            base.update(get_openapi(title=app.title, version=app.version, description=app.description,
                                    routes=app.routes))
        kb_required = registry.default_name() is None
        if kb_required not in built:
            built[kb_required] = deployment_schema(base, settings.max_question_chars, kb_required=kb_required)
        return built[kb_required]

    app.openapi = openapi


def deployment_schema(base: dict, max_chars: int, *, kb_required: bool) -> dict:
    """``base`` with this deployment's rules. The KBs' names are not listed (an enum would tell any
    caller which KBs exist): with several, ``kb`` is required (an OpenAI client may also name the KB
    as its ``model``, which the schema leaves unstated)."""
    schema = copy.deepcopy(base)
    models = schema["components"]["schemas"]
    models["ChatRequest"]["properties"]["question"].update({"maxLength": max_chars, "pattern": QUESTION})
    models["SearchRequest"]["properties"]["query"].update({"maxLength": max_chars, "pattern": NOT_BLANK})
    _openai_messages(models, max_chars)
    if kb_required:
        for name in ("ChatRequest", "SearchRequest", "OpenAIChatRequest"):
            kb = models[name]["properties"]["kb"]
            kb.pop("anyOf", None)
            kb.pop("default", None)
            kb.update(type="string", minLength=1, description="Required: this server serves several knowledge "
                      "bases (or none yet)." + (" An OpenAI client may name it as the model instead."
                                                  if name.startswith("OpenAI") else ""))
            models[name]["required"] = sorted({*models[name].get("required", []), "kb"})
    return schema


def _openai_messages(models: dict, max_chars: int) -> None:
    text_part = {"type": "object", "properties": {"type": {"const": "text"}}, "required": ["type"]}
    # a user message: its text within the limit, in one piece (a string, or at most one text part)
    user_content = {"anyOf": [
        {"type": "string", "maxLength": max_chars, "pattern": USER_TEXT},
        {"type": "array", "contains": text_part, "minContains": 0, "maxContains": 1,
         "items": {"type": "object", "properties": {
             "text": {"anyOf": [{"type": "string", "maxLength": max_chars, "pattern": USER_TEXT},
                                {"type": "null"}]}}}},
        {"type": "null"}]}
    message = models["OpenAIMessage"]
    message["if"] = {"properties": {"role": {"const": "user"}}, "required": ["role"]}
    message["then"] = {"properties": {"content": user_content}}
    # ... and the list holds at least one user message with text (the question)
    question = {"type": "object", "required": ["role", "content"], "properties": {
        "role": {"const": "user"},
        "content": {"anyOf": [
            {"type": "string", "pattern": QUESTION},
            {"type": "array", "contains": {"type": "object", "required": ["type", "text"], "properties": {
                "type": {"const": "text"}, "text": {"type": "string", "pattern": QUESTION}}}}]}}}
    messages = models["OpenAIChatRequest"]["properties"]["messages"]
    messages["contains"] = question
    messages["description"] = ("The conversation. The last user message with text is the question; earlier "
                               "user and assistant messages are its history.")
