"""``POST /v1/chat``: the native chat endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from ..answering import answer_question, stream_answer
from ..deps import RegistryDep, check_question, require_ready
from ..schemas import ChatRequest, ChatResponse
from .sse import sse, sse_response

router = APIRouter(tags=["chat"])


@router.post("/v1/chat", response_model=ChatResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or with stream=true server-sent events: `delta` events "
                                             "{\"text\"} then one `done` event with the whole response."}})
def chat(req: ChatRequest, registry: RegistryDep):
    require_ready(registry)
    question = check_question(req.question, registry.settings)
    kb = registry.get(req.kb)
    result = answer_question(kb, question, [t.model_dump() for t in req.history])
    if not req.stream:
        return result.to_dict()

    def events():
        for delta in stream_answer(result):
            yield sse({"text": delta}, "delta")
        yield sse(result.to_dict(), "done")

    return sse_response(events())
