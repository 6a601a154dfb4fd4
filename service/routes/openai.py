"""``POST /v1/chat/completions``: OpenAI-compatible chat, so existing clients and SDKs work.

The last user message with text is the question, earlier user/assistant messages the history;
messages after it (a tool's output, an assistant's draft) are not read, and a warning says so.
A user message holds its text in one piece (a string or one text part) within ``max_question_chars``:
the rules the deployment's OpenAPI schema states (service/openapi.py). The KB is the
``kb`` extension field, else ``model`` when it names a KB, else the server's only KB. Citations
travel in an extra top-level ``citations`` field (and in the last chunk when streaming), with
``refused``; OpenAI clients ignore fields they do not know.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter

from service.answering import AnswerResult, answer_question, answer_stream
from service.auth.access import CallerDep, kb_for
from service.deps import RegistryDep, RequestIdDep, SlotsDep, check_length, require_ready
from service.errors import ApiError
from service.openapi import MIN_QUESTION_CHARS, is_blank, too_short
from service.routes.sse import guarded, sse, sse_response
from service.schemas import OpenAIChatRequest, error_responses

router = APIRouter(tags=["openai"])


def _text(content) -> str:
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]: text parts, in order
        return "".join(p.text or "" for p in content if p.type == "text")
    return content or ""


def _conversation(req: OpenAIChatRequest, settings) -> tuple[str, list[dict], list[str]]:
    """(question, history, warnings) from the message list, or a 422 naming the message at fault."""
    msgs = [(m.role, _text(m.content)) for m in req.messages]
    for i, m in enumerate(req.messages):
        if m.role != "user":
            continue
        if isinstance(m.content, list) and sum(p.type == "text" for p in m.content) > 1:
            raise ApiError(422, f"messages[{i}]: a user message holds its text in one piece (a string or one "
                                "text part), not several text parts")
        check_length(msgs[i][1], settings, f"user message messages[{i}]")
        if too_short(msgs[i][1]):
            raise ApiError(422, f"messages[{i}]: {msgs[i][1].strip()!r} is too short to answer: a user message with "
                                f"text asks with at least {MIN_QUESTION_CHARS} characters")
    at = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i][0] == "user" and not is_blank(msgs[i][1])), None)
    if at is None:
        raise ApiError(422, "no user message with text: the last one is the question")
    history = [{"role": r, "content": c} for r, c in msgs[:at] if r in ("user", "assistant") and not is_blank(c)]
    after = [r for r, _ in msgs[at + 1:]]
    warnings = [f"answered messages[{at}], the last user message; the {len(after)} message(s) after it "
                f"({', '.join(after)}) were not read"] if after else []
    return msgs[at][1].strip(), history, warnings


def _extra(result: AnswerResult, warnings: list[str]) -> dict:
    """docqa's fields beside OpenAI's (clients ignore fields they do not know)."""
    return {"citations": result.citations, "refused": result.refused, "fallback": result.fallback,
            "reason": result.reason, "answer_span": result.answer_span, "warnings": [*warnings, *result.warnings]}


@router.post("/v1/chat/completions",
             responses={200: {"content": {"application/json": {}, "text/event-stream": {}},
                              "description": "A chat.completion object, or with stream=true server-sent events of "
                                             "chat.completion.chunk objects ending with `data: [DONE]`."},
                        **error_responses(401, 403, 404, 413, 422, 429, 503)})
def chat_completions(req: OpenAIChatRequest, registry: RegistryDep, request_id: RequestIdDep, caller: CallerDep,
                     slots: SlotsDep):
    require_ready(registry)
    question, history, warnings = _conversation(req, registry.settings)
    kb_name = req.kb or (req.model if req.model in registry.names() else None)
    kb = kb_for(registry, caller, kb_name)
    opts = {"params": req.gen_params(), "stage": req.stage, "request_id": request_id,
            "where": caller.filter(req.filters)}
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if not req.stream:
        with slots.slot():
            result = answer_question(kb, question, history, **opts)
        extra = _extra(result, warnings)
        return {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, **extra}

    def chunk(delta: dict, finish: str | None = None, **more) -> str:
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **more})

    started = slots.acquire()
    try:
        items = answer_stream(kb, question, history, **opts)
    except BaseException:
        slots.release(started)
        raise

    def events():
        yield chunk({"role": "assistant", "content": ""})
        for item in items:
            if isinstance(item, str):
                yield chunk({"content": item})
            else:  # the final result: its `answer` is authoritative when it differs from the deltas
                yield chunk({}, "stop", answer=item.answer, **_extra(item, warnings))
        yield sse("[DONE]")

    # OpenAI's own streams report a failure as a `data: {"error": ...}` event; [DONE] still ends it
    return sse_response(slots.held(guarded(events(), lambda err: iter([sse(err), sse("[DONE]")])), started))
