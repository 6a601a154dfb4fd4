"""One Settings composed of per-concern parts, with the same flat keys in docqa.yaml and DOCQA_*."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from docqa.settings import (
    BUILD_KEYS,
    BuildSettings,
    ComplianceSettings,
    LexicalBackend,
    LLMSettings,
    ParseSettings,
    RetrievalSettings,
    RuntimeSettings,
    ServerSettings,
    Settings,
    load_settings,
)

PARTS = (BuildSettings, RuntimeSettings, ParseSettings, RetrievalSettings, ServerSettings, ComplianceSettings,
         LLMSettings)


def test_every_setting_belongs_to_exactly_one_part():
    owners: dict[str, list[str]] = {}
    for part in PARTS:
        for name in part.model_fields:
            owners.setdefault(name, []).append(part.__name__)
    assert not {k: v for k, v in owners.items() if len(v) > 1}
    assert set(Settings.model_fields) == set(owners) | {"home"}
    assert BUILD_KEYS == tuple(BuildSettings.model_fields) and "embed_model" in BUILD_KEYS


def test_a_key_of_each_part_is_read_flat_from_the_environment_and_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCQA_CHUNK_MAX_TOKENS", "128")  # build
    monkeypatch.setenv("DOCQA_EMBED_BATCH_SIZE", "7")  # runtime
    monkeypatch.setenv("DOCQA_MAX_PAGES", "9")  # parse
    monkeypatch.setenv("DOCQA_RRF_K", "30")  # retrieval
    cfg = tmp_path / "docqa.yaml"
    cfg.write_text("max_upload_files: 3\nguard_action: drop\nllm_backend: openai\nlexical_backend: tantivy\n",
                   encoding="utf-8")
    monkeypatch.setenv("DOCQA_CONFIG", str(cfg))
    s = load_settings(home=tmp_path)
    assert (s.chunk_max_tokens, s.embed_batch_size, s.max_pages, s.rrf_k) == (128, 7, 9, 30)
    assert (s.max_upload_files, s.guard_action.value, s.llm_backend.value) == (3, "drop", "openai")
    assert s.lexical_backend is LexicalBackend.TANTIVY  # a string becomes its enum member


def test_validators_of_a_part_still_guard_the_whole(tmp_path):
    with pytest.raises(ValidationError, match="kb_llm"):
        load_settings(home=tmp_path, kb_llm={"a": {"chunker": "nsp"}})
    with pytest.raises(ValidationError, match="kb_compliance"):
        load_settings(home=tmp_path, kb_compliance={"a": {"llm_model": "x"}})
    assert load_settings(home=tmp_path).with_overrides({"guard_threshold": "0.7"}).guard_threshold == 0.7
