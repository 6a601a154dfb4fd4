"""A home for the integration tests (Dify, MCP, LangChain/LlamaIndex): KB ``regs`` (and ``other``) of three small
policies with metadata, one of them readable only by the group ``hr-only``, and reader keys: ``regs`` (no
groups), ``hr`` (group hr-only) and ``other`` (only KB ``other``). Built with the small English MiniLM embedder."""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DOCS = {  # name: (text, sidecar metadata)
    "leave.md": ("# 年假制度\n\n员工累计工作满一年不满十年的，年休假五天；满十年不满二十年的，年休假十天。\n",
                 {"department": "hr", "tags": ["leave", "policy"], "date": "2023-05-01", "level": 2}),
    "travel.md": ("# 差旅报销\n\n差旅费用须在出差结束后十个工作日内提交报销，逾期不予受理。\n",
                  {"department": "finance", "tags": ["travel"], "date": "2021-11-20", "level": 5}),
    "salary.md": ("# 薪酬保密\n\n薪酬等级表仅限人事部门查阅，员工年休假期间工资照发。\n",
                  {"department": "hr", "groups": ["hr-only"], "date": "2024-02-01", "level": 9}),
}


def build_home(root: Path) -> tuple[Path, dict[str, str]]:
    """(DOCQA_HOME, keys by name) under ``root``."""
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths
    from service.auth.keys import KeyStore

    home, src = root / "home", root / "src"
    src.mkdir(parents=True)
    for name, (text, meta) in DOCS.items():
        (src / name).write_text(text, encoding="utf-8")
        (src / f"{name}.meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    settings = load_settings(home=home, embed_model=MODEL, embed_backend="torch", keyphrases=0)
    for kb in ("regs", "other"):
        report = ingest_paths([src], kb, settings, progress=False)
        assert not report.failures, report.failures
    store = KeyStore(home / "keys.json")
    keys = {"regs": store.create(role="reader", kbs=["regs"])[0],
            "hr": store.create(role="reader", kbs=["regs"], groups=["hr-only"])[0],
            "other": store.create(role="reader", kbs=["other"])[0]}
    return home, keys
