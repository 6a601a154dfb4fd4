"""Server-sent events helpers."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator

from fastapi.responses import StreamingResponse

from service.logs import REQUEST_ID

log = logging.getLogger("docqa.sse")


def sse(data: dict | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def sse_response(events: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def guarded(events: Iterator[str], on_error: Callable[[dict], Iterator[str]]) -> Iterator[str]:
    """``events``, but an exception raised mid-stream ends the stream with ``on_error``'s events
    (an error body carrying a request id, as the error handlers write it) instead of a connection
    cut without a word. Once the 200 and the first events are sent no error status can follow, so
    a streaming client learns of a failure only from this last event; the traceback goes to the
    server log, never to the client."""
    try:
        yield from events
    except Exception:
        rid = REQUEST_ID.get() or uuid.uuid4().hex[:12]  # the request's X-Request-ID
        log.exception("internal error while streaming %s", rid)
        yield from on_error({"error": {"message": f"internal error while streaming (request id {rid}); see the "
                                                  "server log", "type": "internal_error", "code": 500}})
