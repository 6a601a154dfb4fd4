"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

GEN_FIELDS = ("temperature", "top_p", "max_tokens", "repetition_penalty", "no_repeat_ngram_size")


class Turn(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=20000)


class ChatRequest(BaseModel):
    question: str = Field(description="The user's question.")
    history: list[Turn] = Field(default_factory=list, max_length=100, description="Earlier turns, oldest first.")
    kb: str | None = Field(default=None, description="Knowledge base; optional when the server has exactly one.")
    stream: bool = False
    stage: str | None = Field(default=None, max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$",
                              description="Dialogue stage (e.g. greeting, consult, closing): the compliance filter "
                                          "answers with this stage's fallback reply when it rejects a draft.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="LLM sampling; default: the KB's.")
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    repetition_penalty: float | None = Field(default=None, gt=0, le=2)
    no_repeat_ngram_size: int | None = Field(default=None, ge=0, le=20, description="transformers backend only.")

    def gen_params(self) -> dict:
        """The generation overrides this request sets (None = the KB's default)."""
        return {k: getattr(self, k) for k in GEN_FIELDS if getattr(self, k) is not None}


class Citation(BaseModel):
    n: int
    doc_id: str
    source: str
    title: str = ""
    text: str
    unit_id: int | None = None
    page: int | None = None
    heading_path: list[str] = Field(default_factory=list)


class ChatResponse(BaseModel):
    answer: str
    citations: list[Citation]
    refused: bool
    fallback: bool = False
    reason: str | None = None
    query: str = ""
    evidence_score: float = 0.0


class SearchRequest(BaseModel):
    query: str
    kb: str | None = None
    k: int = Field(default=5, ge=1, le=100)
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"


class OpenAIMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list | None = None


class OpenAIChatRequest(BaseModel):
    model: str = "docqa"
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    kb: str | None = Field(default=None, description="docqa extension: the knowledge base (else `model` if it "
                                                     "names one, else the server's only KB).")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192, description="OpenAI's newer name.")
    repetition_penalty: float | None = Field(default=None, gt=0, le=2, description="vLLM extension.")
    stage: str | None = Field(default=None, max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$",
                              description="docqa extension: dialogue stage (see /v1/chat).")

    def gen_params(self) -> dict:
        out = {"temperature": self.temperature, "top_p": self.top_p,
               "max_tokens": self.max_tokens or self.max_completion_tokens,
               "repetition_penalty": self.repetition_penalty}
        return {k: v for k, v in out.items() if v is not None}
