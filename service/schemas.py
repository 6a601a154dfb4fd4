"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
)

from docqa import filters as filter_rules


def _no_lone_surrogates(text: str) -> str:
    """JSON may carry "\\ud800" alone; such a string cannot be encoded, tokenised or logged, so it is a
    client error (422) at the edge, not a 500 deep inside retrieval. (pydantic refuses most of these
    itself; inside a ``str | list`` union a lone surrogate got through to retrieval.)"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"text contains an unpaired surrogate (\\u{ord(text[e.start]):04x}) at position "
                         f"{e.start}: send valid Unicode") from None
    return text


# Free text from a client: strict (a number or list is not coerced to text) and valid Unicode.
Text = Annotated[StrictStr, AfterValidator(_no_lone_surrogates)]


def _whole(v):
    """JSON Schema's "integer" is any whole number, 3.0 included; a string, a bool or 3.5 is not one."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError("must be a whole number")
    return int(v)


def whole(ge: int, le: int):
    """A count from a client in [ge, le]: what the schema calls an integer (3 or 3.0), nothing coerced
    from text. The range comes before the validator so that the schema states it as minimum/maximum
    (after it, pydantic writes non-standard "ge"/"le" that schema-driven clients ignore)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_whole)]


MaxTokens = whole(1, 8192)
# A filter's field name: 1-64 characters of valid Unicode (docqa.filters checks the rest).
FilterField = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64), AfterValidator(_no_lone_surrogates)]

FILTERS_DOC = ("Metadata filters, applied inside retrieval: {field: value} (equality; a list field contains it), "
               "{field: {\"in\": [...]}} (any of), {field: {\"gte\"|\"gt\"|\"lte\"|\"lt\": date or number}} (range). "
               "Fields: title, source, doc_id, or any metadata key (tags, date, version, a JSONL record's keys).")
# validated by docqa.filters (messages naming the field); the schema states the same rules
Filters = Annotated[dict[FilterField, Any] | None,
                    WithJsonSchema({"anyOf": [filter_rules.json_schema(), {"type": "null"}]})]

GEN_FIELDS = ("temperature", "top_p", "max_tokens", "repetition_penalty", "no_repeat_ngram_size")


class Turn(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: Text = Field(max_length=20000)


AS_GROUPS_DOC = ("Admin only: answer as a reader key whose groups are these would be answered (the console's "
                 "retrieval test); [] is a key of no group (KB-wide documents only). Other roles: 403.")
AsGroups = Annotated[list[Annotated[StrictStr, Field(min_length=1, max_length=64)]] | None,
                     Field(default=None, max_length=50, description=AS_GROUPS_DOC)]


class ChatRequest(BaseModel):
    question: Text = Field(min_length=1, description="The user's question (not empty, valid Unicode).")
    history: list[Turn] = Field(default_factory=list, max_length=100, description="Earlier turns, oldest first.")
    kb: str | None = Field(default=None, description="Knowledge base; optional when the server has exactly one.")
    filters: Filters = Field(default=None, description=FILTERS_DOC)
    stream: StrictBool = Field(default=False, description="true: server-sent events (text/event-stream).")
    as_groups: AsGroups = None
    stage: str | None = Field(default=None, max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$",
                              description="Dialogue stage (e.g. greeting, consult, closing): the compliance filter "
                                          "answers with this stage's fallback reply when it rejects a draft.")
    temperature: StrictFloat | None = Field(default=None, ge=0, le=2, description="LLM sampling; default: the KB's.")
    top_p: StrictFloat | None = Field(default=None, gt=0, le=1)
    max_tokens: MaxTokens | None = None
    repetition_penalty: StrictFloat | None = Field(default=None, gt=0, le=2)
    no_repeat_ngram_size: whole(0, 20) | None = Field(default=None, description="transformers backend only.")

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
    label: str = Field(default="", description="Pinpoint citation where the passage is a statute's article or a "
                                               "standard's numbered clause: 《中华人民共和国劳动合同法》第十九条.")


class AnswerSpan(BaseModel):
    text: str = Field(description="The short answer: the span as written in the passage, or 是/否 (Yes/No).")
    kind: str = Field(description="span | yes | no")
    n: int = Field(description="The citation [n] of the passage that holds it.")
    start: int = Field(description="First character of the span in that citation's text (-1 for yes / no, and "
                       "for a table, whose rows the reader reads as \"header：cell\" lines: see sentence).")
    end: int = Field(description="End (exclusive) of the span in that citation's text (-1 for yes / no).")
    sentence: str = Field(description="The passage sentence that holds the answer, as quoted.")
    probability: float = Field(description="The reader's probability that the passage holds an answer.")


class ChatResponse(BaseModel):
    answer: str
    citations: list[Citation]
    refused: bool
    fallback: bool = False
    reason: str | None = None
    query: str = ""
    evidence_score: float = 0.0
    answer_span: AnswerSpan | None = Field(default=None, description="What the reader found (extractive answers "
                                           "read by docqa's reader); null otherwise.")
    basis: str = Field(default="evidence", description="What decided to answer or refuse: reader (its probability "
                       "is evidence_score), evidence (sentence support), rerank, article (the question named it).")
    threshold: float | None = Field(default=None, description="The KB's threshold for that basis: evidence_score "
                                    "below it is a refusal (null for article, which needs none).")
    warnings: list[str] = Field(default_factory=list, description="What the reply was given without, e.g. "
                                "\"answered without reranking: ...\" when the reranker could not be loaded.")


class SearchRequest(BaseModel):
    query: Text = Field(min_length=1)
    kb: str | None = None
    filters: Filters = Field(default=None, description=FILTERS_DOC)
    k: whole(1, 100) = 5
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    as_groups: AsGroups = None


class ContentPart(BaseModel):
    """One part of an OpenAI message's content list; text parts are read, other kinds (images...) ignored."""

    model_config = ConfigDict(extra="allow")
    type: StrictStr
    text: Text | None = None


class OpenAIMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Text | list[ContentPart] | None = None


class OpenAIChatRequest(BaseModel):
    model: str = "docqa"
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=200)
    stream: StrictBool = Field(default=False, description="true: server-sent events (text/event-stream).")
    kb: str | None = Field(default=None, description="docqa extension: the knowledge base (else `model` if it "
                                                     "names one, else the server's only KB).")
    filters: Filters = Field(default=None, description="docqa extension: " + FILTERS_DOC)
    temperature: StrictFloat | None = Field(default=None, ge=0, le=2)
    top_p: StrictFloat | None = Field(default=None, gt=0, le=1)
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = Field(default=None, description="OpenAI's newer name.")
    repetition_penalty: StrictFloat | None = Field(default=None, gt=0, le=2, description="vLLM extension.")
    stage: str | None = Field(default=None, max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$",
                              description="docqa extension: dialogue stage (see /v1/chat).")

    def gen_params(self) -> dict:
        out = {"temperature": self.temperature, "top_p": self.top_p,
               "max_tokens": self.max_tokens or self.max_completion_tokens,
               "repetition_penalty": self.repetition_penalty}
        return {k: v for k, v in out.items() if v is not None}


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, in words a client can act on.")
    type: str = Field(description="invalid_request_error | not_found | unavailable | internal_error ...")
    code: int = Field(description="The HTTP status.")


class ErrorResponse(BaseModel):
    """Every error, whatever the status: OpenAI's shape, never a traceback."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict:
    """OpenAPI ``responses`` for the error statuses a route can answer, all in ``ErrorResponse``'s shape
    (it replaces FastAPI's default 422 schema, which is not what the server sends)."""
    why = {401: "No API key, or an invalid, revoked or expired one (servers with keys).",
           403: "The API key's role or knowledge bases do not allow this.",
           404: "Unknown knowledge base.",
           409: "Another writer holds the knowledge base; retry after Retry-After seconds.",
           413: "Request body over max_request_mb (uploads: max_upload_mb, max_file_mb per file).",
           415: "Unsupported file type, or content that is not what the file name says.",
           429: "Too many requests in progress; retry after Retry-After seconds.",
           422: "Invalid request: the message names the field and why.",
           503: "Still loading, or the knowledge base is damaged (the message says which, and how to recover)."}
    return {s: {"model": ErrorResponse, "description": why[s]} for s in statuses}
