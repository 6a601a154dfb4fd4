"""The HTTP call both retrievers make: ``POST {url}/v1/search`` with a docqa API key; one hit per passage, best
first, with docqa's citation fields. A refusal (401/403/404/422/503...) raises ``DocqaRequestError`` with the server's
message, never an opaque HTTP error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from docqa.errors import DocqaError

MODES = ("hybrid", "dense", "keyword")


class DocqaRequestError(DocqaError, RuntimeError):
    """The server refused the search, or could not be reached; ``status`` is the HTTP status (None: no reply)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SearchSpec:
    url: str
    api_key: str | None = None
    kb: str | None = None
    k: int = 5
    mode: str = "hybrid"
    filters: dict | None = None
    timeout: float = 30.0
    headers: dict = field(default_factory=dict)

    def __post_init__(self):
        if not 1 <= self.k <= 100:
            raise ValueError(f"k must be 1-100, got {self.k}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def request(self, query: str) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query, "k": self.k, "mode": self.mode}
        if self.kb:
            body["kb"] = self.kb
        if self.filters:
            body["filters"] = self.filters
        headers = dict(self.headers)
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return {"url": f"{self.url.rstrip('/')}/v1/search", "json": body, "headers": headers,
                "timeout": self.timeout}


def search(spec: SearchSpec, query: str) -> tuple[str, list[dict]]:
    """(the KB that answered, its hits)."""
    try:
        r = httpx.post(**spec.request(query))
    except httpx.HTTPError as e:
        raise DocqaRequestError(f"docqa at {spec.url} could not be reached: {type(e).__name__}: {e}") from e
    return _hits(r)


async def asearch(spec: SearchSpec, query: str) -> tuple[str, list[dict]]:
    try:
        async with httpx.AsyncClient() as client:
            r = await client.post(**spec.request(query))
    except httpx.HTTPError as e:
        raise DocqaRequestError(f"docqa at {spec.url} could not be reached: {type(e).__name__}: {e}") from e
    return _hits(r)


def _hits(r: httpx.Response) -> tuple[str, list[dict]]:
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:300]
        raise DocqaRequestError(f"docqa refused the search ({r.status_code}): {message}", r.status_code)
    body = r.json()
    return body["kb"], body["hits"]


def citation_metadata(kb: str, hit: dict) -> dict:
    """What a framework document carries of a hit: enough to cite it (label, page, source) and to find it again
    (kb, doc_id, unit_id)."""
    return {"kb": kb, "doc_id": hit.get("doc_id"), "unit_id": hit.get("unit_id"), "source": hit.get("source"),
            "title": hit.get("title"), "label": hit.get("label"), "page": hit.get("page"),
            "heading_path": hit.get("heading_path") or [], "score": hit.get("score"),
            "rerank_score": hit.get("rerank_score"), "exact": bool(hit.get("exact"))}
