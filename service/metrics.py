"""``/metrics`` in Prometheus text format (prometheus-client), one registry for the process.

- ``docqa_http_requests_total{route, method, status}`` and ``docqa_http_request_seconds{route}``: every
  request, by route template (``/v1/kbs/{kb}/eval``, never the filled-in path, so label values stay few);
- ``docqa_answer_stage_seconds{stage}``: retrieve (search and evidence), generate (inside the LLM), filter
  (compliance review), per answer;
- ``docqa_answers_total{outcome}``: answered, refused, fallback, snapped, dropped, redacted;
- ``docqa_fallbacks_total{cause}``: llm, blocklist, ungrounded, personal_data, stage, snap_no_match, ...;
- ``docqa_jobs_total{kind, status}`` and ``docqa_jobs_queued``: background jobs.

No label carries a KB name, a question or document text: the endpoint is open like ``/readyz`` (a
scraper has no API key), so it must not reveal what a key would protect.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ACCESS = logging.getLogger("docqa.access")
REGISTRY = CollectorRegistry(auto_describe=True)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HTTP_REQUESTS = Counter("docqa_http_requests", "HTTP requests by route template, method and status",
                        ["route", "method", "status"], registry=REGISTRY)
HTTP_SECONDS = Histogram("docqa_http_request_seconds", "HTTP request time until the last byte, by route template",
                         ["route"], buckets=_SECONDS, registry=REGISTRY)
STAGE_SECONDS = Histogram("docqa_answer_stage_seconds", "Time per answering stage", ["stage"], buckets=_SECONDS,
                          registry=REGISTRY)
ANSWERS = Counter("docqa_answers", "Answers by outcome", ["outcome"], registry=REGISTRY)
FALLBACKS = Counter("docqa_fallbacks", "Fallback replies by cause", ["cause"], registry=REGISTRY)
JOBS = Counter("docqa_jobs", "Background jobs finished, by kind and status", ["kind", "status"], registry=REGISTRY)
INGESTED = Counter("docqa_ingest_documents", "Documents of upload jobs by result (added, updated, unchanged, "
                   "failed)", ["result"], registry=REGISTRY)
INGESTED_UNITS = Counter("docqa_ingest_units", "Units written by upload jobs", registry=REGISTRY)
ANSWER_QUEUE = Gauge("docqa_answers_waiting", "Requests waiting for an answer slot", registry=REGISTRY)
REFUSED_BUSY = Counter("docqa_refused_busy", "Requests refused with 429: every answer slot busy", registry=REGISTRY)
JOBS_QUEUED = Gauge("docqa_jobs_queued", "Background jobs waiting or running", registry=REGISTRY)


def observe_answer(result) -> None:
    """Count one final answer (called once per answer by service.answering)."""
    ANSWERS.labels(result.outcome).inc()
    cause = result.fallback_cause
    if cause is not None:
        FALLBACKS.labels(cause).inc()
    for stage, seconds in (result.timings or {}).items():
        STAGE_SECONDS.labels(stage).observe(seconds)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (pure ASGI: streams are timed to the end)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            seconds = time.perf_counter() - t0
            HTTP_REQUESTS.labels(route, scope.get("method", "?"), str(status["code"])).inc()
            HTTP_SECONDS.labels(route).observe(seconds)
            # the access log: ids and numbers only (no query string, no body: those can hold document text)
            ACCESS.info("%s %s %s %.1f ms", scope.get("method"), route, status["code"], seconds * 1000,
                        extra={"method": scope.get("method"), "route": route, "status": status["code"],
                               "ms": round(seconds * 1000, 1),
                               "request_id": (scope.get("state") or {}).get("request_id")})
