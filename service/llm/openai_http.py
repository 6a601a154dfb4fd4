"""The ``openai`` backend: any OpenAI-compatible ``/v1/chat/completions`` server over HTTP.

First of all a vLLM server with LoRA adapters::

    vllm serve Qwen/Qwen2.5-7B-Instruct --enable-lora --lora-modules contracts=/srv/lora/contracts

where ``llm_model: contracts`` selects the adapter (vLLM serves each adapter under its name, and
the base model under its own). Also llama.cpp's server, TGI, SGLang, Ollama, or OpenAI itself.

Failure handling, because a service must answer even when its LLM does not:
- connect errors, connect timeouts, 429 and 5xx are retried ``retries`` times with exponential
  backoff (0.25 s, 0.5 s, 1 s ..., capped at 4 s), and only before any text has been received;
- a read timeout is not retried (an overloaded server would only get more load) and, like an
  exhausted retry budget, raises ``LLMUnavailable`` so the pipeline serves its fallback reply;
- a 404 naming the model says which models the server does serve (a misspelt adapter name);
- ``health()`` asks ``GET /models`` (cached a few seconds) and is what ``/readyz`` reports.

``repetition_penalty`` is sent only when it is not 1.0: vLLM, TGI and llama.cpp accept it as an
extension, OpenAI proper rejects unknown fields, so leave it at 1.0 for such servers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx

from service.llm.base import GenParams, Health, LLMError, LLMUnavailable, Message

RETRY_STATUS = {429, 500, 502, 503, 504}
BACKOFF_S, BACKOFF_CAP_S = 0.25, 4.0
HEALTH_TTL_S = 5.0


def normalize_base_url(url: str) -> str:
    """``http://h:8000``, ``http://h:8000/`` and ``http://h:8000/v1`` all mean ``http://h:8000/v1``."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    return url if url.endswith("/v1") else f"{url}/v1"


class OpenAIHTTP:
    """Chat completions from an OpenAI-compatible server; ``model`` is the served name (LoRA adapter)."""

    def __init__(self, url: str, model: str, *, api_key: str | None = None, connect_timeout_s: float = 3.0,
                 timeout_s: float = 60.0, retries: int = 2):
        self.base_url = normalize_base_url(url)
        self.model = model
        self.name = f"openai:{model}@{self.base_url}"
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._health: tuple[float, Health] | None = None
        self._health_lock = threading.Lock()

    # --- the LLM interface ---
    def generate(self, messages: list[Message], params: GenParams) -> str:
        resp = self._send(self._body(messages, params, stream=False), stream=False)
        try:
            data = resp.json()
            return data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise LLMError(f"{self.base_url} returned an unexpected chat completion: {resp.text[:200]!r}") from e

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        resp = self._send(self._body(messages, params, stream=True), stream=True)
        try:
            yield from _sse_deltas(resp.iter_lines())
        except httpx.TimeoutException as e:
            raise LLMUnavailable(f"{self.base_url} stopped sending mid-answer ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise LLMError(f"the stream from {self.base_url} broke off: {type(e).__name__}: {e}") from e
        finally:
            resp.close()

    def warm_up(self) -> None:
        """Nothing to load; probe once so the log says early whether the server is there."""
        self.health()

    def health(self) -> Health:
        with self._health_lock:
            if self._health and time.monotonic() - self._health[0] < HEALTH_TTL_S:
                return self._health[1]
            h = self._probe()
            self._health = (time.monotonic(), h)
            return h

    def close(self) -> None:
        self._client.close()

    # --- internals ---
    def _probe(self) -> Health:
        try:
            # short: /readyz waits on this, and probes (k8s: 1 s by default) must not time out on it
            r = self._client.get("/models", timeout=httpx.Timeout(0.8, connect=0.4))
        except httpx.HTTPError as e:
            return Health(False, f"LLM server {self.base_url} unreachable: {type(e).__name__}: {e}")
        if r.status_code != 200:
            return Health(False, f"LLM server {self.base_url} answered GET /models with HTTP {r.status_code}")
        try:
            served = [m["id"] for m in r.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            served = []
        if served and self.model not in served:
            return Health(False, f"model {self.model!r} is not served by {self.base_url} (served: {served})",
                          {"served": served})
        return Health(True, None, {"served": served, "model": self.model})

    def _body(self, messages: list[Message], params: GenParams, *, stream: bool) -> dict:
        body = {"model": self.model, "messages": messages, "stream": stream, "temperature": params.temperature,
                "top_p": params.top_p, "max_tokens": params.max_tokens}
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _send(self, body: dict, *, stream: bool) -> httpx.Response:
        """POST with bounded retries; returns a 200 response (open, when streaming)."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(BACKOFF_S * 2 ** (attempt - 1), BACKOFF_CAP_S))
            try:
                req = self._client.build_request("POST", "/chat/completions", json=body)
                resp = self._client.send(req, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            except httpx.TimeoutException as e:
                raise LLMUnavailable(f"LLM server {self.base_url} did not answer in time ({type(e).__name__})") from e
            if resp.status_code == 200:
                return resp
            if stream:
                resp.read()
                resp.close()
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            raise self._client_error(resp)
        raise LLMUnavailable(f"LLM server {self.base_url} unavailable after {self.retries + 1} attempt(s): {last}")

    def _client_error(self, resp: httpx.Response) -> LLMError:
        try:
            msg = resp.json().get("error", {}).get("message") or resp.text
        except (ValueError, AttributeError):
            msg = resp.text
        if resp.status_code == 404 and self.model in (msg or ""):
            h = self._probe()
            served = (h.detail or {}).get("served")
            return LLMUnavailable(f"model {self.model!r} is not served by {self.base_url}"
                                  + (f" (served: {served})" if served else f": {msg[:200]}"))
        if resp.status_code in (401, 403):
            return LLMUnavailable(f"LLM server {self.base_url} refused the credentials (HTTP {resp.status_code}); "
                                  "set llm_api_key")
        return LLMError(f"LLM server {self.base_url} rejected the request (HTTP {resp.status_code}): {msg[:300]}")


def _sse_deltas(lines: Iterator[str]) -> Iterator[str]:
    """Text deltas from an OpenAI chat-completion event stream (``data: {...}`` lines, ``data: [DONE]``)."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), "event:" lines
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError as e:
            raise LLMError(f"malformed event in the LLM stream: {payload[:200]!r}") from e
        if "error" in event:
            raise LLMError(f"the LLM server reported an error mid-stream: {event['error']}")
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield text
