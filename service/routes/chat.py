"""``POST /v1/chat``: the native chat endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from service.answering import answer_question, answer_stream
from service.auth.access import CallerDep, kb_for
from service.deps import RegistryDep, RequestIdDep, SlotsDep, check_question, require_ready
from service.routes.sse import guarded, sse, sse_response
from service.schemas import ChatRequest, ChatResponse, error_responses

router = APIRouter(tags=["chat"])


@router.post("/v1/chat", response_model=ChatResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or with stream=true server-sent events: `delta` events "
                                             "{\"text\"} then one `done` event with the whole response "
                                             "(or, if the server fails mid-stream, one `error` event "
                                             "{\"error\": {\"message\", \"type\", \"code\"}})."},
                        **error_responses(401, 403, 404, 413, 422, 429, 503)})
def chat(req: ChatRequest, registry: RegistryDep, request_id: RequestIdDep, caller: CallerDep, slots: SlotsDep):
    require_ready(registry)
    question = check_question(req.question, registry.settings)
    kb = kb_for(registry, caller, req.kb)
    history = [t.model_dump() for t in req.history]
    opts = {"params": req.gen_params(), "stage": req.stage, "request_id": request_id,
            "where": caller.acting_as(req.as_groups).filter(req.filters)}
    if not req.stream:
        with slots.slot():
            return answer_question(kb, question, history, **opts).to_dict()
    started = slots.acquire()
    try:
        items = answer_stream(kb, question, history, **opts)  # retrieval errors surface here, as HTTP errors
    except BaseException:
        slots.release(started)
        raise

    def events():
        for item in items:
            if isinstance(item, str):
                yield sse({"text": item}, "delta")
            else:  # the final AnswerResult: authoritative (see answer_stream)
                yield sse(item.to_dict(), "done")

    return sse_response(slots.held(guarded(events(), lambda err: iter([sse(err, "error")])), started))
