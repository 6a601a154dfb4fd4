"""The one small interface every answer writer implements, and what it is called with.

An ``LLM`` takes chat messages (``[{"role": "system"|"user"|"assistant", "content": str}]``) and
``GenParams`` and returns the reply whole (``generate``) or as text deltas (``stream``). Backends
raise ``LLMUnavailable`` when the model cannot be reached or loaded (the pipeline then answers with
a fallback reply and ``fallback: true``) and ``LLMError`` for a failure of one request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol, runtime_checkable

from docqa.errors import Unavailable

Message = dict[str, str]


class LLMError(Unavailable):
    """One generation failed (bad response, server-side error after the retries)."""


class LLMUnavailable(LLMError):
    """The backend cannot answer at all: server down or unreachable, model not served, model not loadable."""


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters. ``temperature == 0`` means greedy decoding (reproducible answers).

    ``no_repeat_ngram_size`` exists only in transformers; the other backends ignore it (vLLM and
    OpenAI servers have ``repetition_penalty`` / ``frequency_penalty`` instead).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> GenParams:
        """The KB's defaults (``llm_temperature``, ``llm_top_p``, ...)."""
        return cls(temperature=settings.llm_temperature, top_p=settings.llm_top_p,
                   max_tokens=settings.llm_max_tokens, repetition_penalty=settings.llm_repetition_penalty,
                   no_repeat_ngram_size=settings.llm_no_repeat_ngram_size)

    def override(self, **changes: Any) -> GenParams:
        """These params with the given non-None values replaced (a request's own parameters)."""
        known = {k: v for k, v in changes.items() if v is not None and k in self.__dataclass_fields__}
        if "stop" in known:
            known["stop"] = tuple(known["stop"])
        return replace(self, **known)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Health:
    """Whether the backend can answer now; ``reason`` says why not (shown by ``/readyz``)."""

    available: bool
    reason: str | None = None
    detail: dict | None = None


@runtime_checkable
class LLM(Protocol):
    """What the answering pipeline needs from a model: two calls, plus warm-up and a health probe."""

    name: str

    def generate(self, messages: list[Message], params: GenParams) -> str: ...

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]: ...

    def warm_up(self) -> None: ...

    def health(self) -> Health: ...
