"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Turn(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=20000)


class ChatRequest(BaseModel):
    question: str = Field(description="The user's question.")
    history: list[Turn] = Field(default_factory=list, max_length=100, description="Earlier turns, oldest first.")
    kb: str | None = Field(default=None, description="Knowledge base; optional when the server has exactly one.")
    stream: bool = False


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
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
