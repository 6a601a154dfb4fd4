"""Server logs: one JSON object a line (``log_format: json``, the default for ``docqa serve``) or plain text.

Every record carries the request id of the request it was written for (``X-Request-ID``, also in
error bodies and the audit log), so one id finds everything a request did. Messages never carry
document text or questions at info level: routes log what happened (route, status, timings, ids),
and the text lives only in the audit log, which the compliance team controls.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("docqa_request_id", default=None)
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        if rid:
            out["request_id"] = rid
        for k, v in vars(record).items():  # extra={...} fields
            if k not in _STD and k not in out and not k.startswith("_"):
                out[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or REQUEST_ID.get()
        record.rid = f" [{rid}]" if rid else ""
        return super().format(record)


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    """Route docqa's and uvicorn's loggers through one handler on stderr in ``fmt``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
