"""Which ``LLM`` answers for a KB: built from its settings, one instance per distinct configuration.

KBs that name the same model share one loaded copy (a 7B model loaded twice is 14 GB wasted), and
an HTTP client per server. ``extractive`` has no LLM: ``llm_for`` returns None and the pipeline
quotes evidence sentences instead.
"""

from __future__ import annotations

import threading
from typing import Any

from docqa.settings import LLMBackend, Settings
from service.llm.base import LLM

_CACHE: dict[tuple, LLM] = {}
_LOCK = threading.Lock()


def kb_llm_settings(settings: Settings, kb_name: str | None) -> Settings:
    """``settings`` with the KB's ``kb_llm`` overrides applied (validated like any setting)."""
    return settings.with_overrides(settings.kb_llm.get(kb_name or "") or {} if kb_name else {})


def _key(s: Settings) -> tuple:
    b = s.llm_backend
    if b == LLMBackend.OPENAI:
        return (b, s.llm_url, s.llm_model, s.llm_api_key, s.llm_connect_timeout_s, s.llm_timeout_s, s.llm_retries)
    return (b, s.llm_base_model, s.llm_adapter, s.llm_gguf_file, s.llm_model, s.device)


def _build(s: Settings) -> LLM:
    b = s.llm_backend
    if b == LLMBackend.OPENAI:
        from service.llm.openai_http import OpenAIHTTP

        return OpenAIHTTP(s.llm_url, s.llm_model, api_key=s.llm_api_key, connect_timeout_s=s.llm_connect_timeout_s,
                          timeout_s=s.llm_timeout_s, retries=s.llm_retries)
    if b == LLMBackend.TRANSFORMERS:
        from service.llm.transformers_local import TransformersLocal

        return TransformersLocal(s.llm_base_model, adapter=s.llm_adapter, gguf_file=s.llm_gguf_file, device=s.device)
    if b == LLMBackend.VLLM:
        from service.llm.vllm_local import VLLMLocal

        return VLLMLocal(s.llm_base_model, adapter=s.llm_adapter, adapter_name=s.llm_model)
    raise ValueError(f"llm_backend {b!r} has no LLM")


def llm_for(settings: Settings) -> LLM | None:
    """The (shared) LLM for these settings, or None for the extractive backend. Nothing loads here:
    call ``warm_up()`` (the server does at start-up) or let the first request load it."""
    if settings.llm_backend == LLMBackend.EXTRACTIVE:
        return None
    key = _key(settings)
    with _LOCK:
        llm = _CACHE.get(key)
        if llm is None:
            _CACHE[key] = llm = _build(settings)
        return llm


def describe(llm: LLM | None) -> dict[str, Any]:
    """The backend's name and health, as ``/readyz`` shows it."""
    if llm is None:
        return {"backend": "extractive", "available": True}
    h = llm.health()
    return {"backend": llm.name, "available": h.available, **({"reason": h.reason} if h.reason else {})}


def llm_status(settings: Settings, kb_names: list[str]) -> dict[str, dict[str, Any]]:
    """Per KB: which backend answers and whether it can now (``/readyz``)."""
    return {name: describe(llm_for(kb_llm_settings(settings, name))) for name in kb_names}


def warm_up_llms(settings: Settings, kb_names: list[str]) -> None:
    """Load (or probe) every KB's LLM once, at start-up, so no user waits for a model to load.
    A failure is logged and shown by ``/readyz``; the KBs keep answering with the fallback reply."""
    import logging

    seen: set[int] = set()
    for name in kb_names:
        llm = llm_for(kb_llm_settings(settings, name))
        if llm is None or id(llm) in seen:
            continue
        seen.add(id(llm))
        try:
            llm.warm_up()
        except Exception as e:  # reported by /readyz, never raised into the server
            logging.getLogger("docqa.llm").warning("LLM for KB %s unavailable at start-up: %s", name, e)
