"""FastAPI dependencies: the registry, the settings, and request validation shared by routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from docqa.settings import Settings
from service.errors import ApiError
from service.limits import AnswerSlots
from service.openapi import MIN_QUESTION_CHARS, is_blank, too_short
from service.registry import KBRegistry
from service.request_id import get_request_id


def get_registry(request: Request) -> KBRegistry:
    return request.app.state.registry


def get_settings(request: Request) -> Settings:
    return request.app.state.registry.settings


def get_slots(request: Request) -> AnswerSlots:
    return request.app.state.slots


RegistryDep = Annotated[KBRegistry, Depends(get_registry)]
SlotsDep = Annotated[AnswerSlots, Depends(get_slots)]  # answers in progress (429 when saturated)
SettingsDep = Annotated[Settings, Depends(get_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]  # X-Request-ID, or a new id


def check_length(text: str, settings: Settings, what: str) -> None:
    if len(text) > settings.max_question_chars:
        raise ApiError(422, f"the {what} is {len(text)} characters, over the limit of {settings.max_question_chars}")


def check_question(question: str, settings: Settings, what: str = "question") -> str:
    """The question, stripped; the rules are those the OpenAPI schema states (service/openapi.py): a
    search query needs one character that is not a space, a chat question two."""
    check_length(question, settings, what)
    if is_blank(question):
        raise ApiError(422, f"the {what} is empty")
    if what == "question" and too_short(question):
        raise ApiError(422, f"the question {question.strip()!r} is too short to answer: ask with at least "
                            f"{MIN_QUESTION_CHARS} characters")
    return question.strip()


def require_ready(registry: KBRegistry) -> None:
    if registry.error:
        raise ApiError(503, f"the server failed to load its models: {registry.error}", "unavailable")
    if not registry.ready:
        raise ApiError(503, "the server is still loading its models; retry shortly (GET /readyz)", "unavailable")
