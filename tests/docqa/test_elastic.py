"""The Elasticsearch keyword engine against a real server: set DOCQA_ES_URL (e.g.
``docker compose -f deploy/docker-compose.yml up -d elasticsearch`` then
``DOCQA_ES_URL=http://127.0.0.1:9200``); skipped otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from docqa.lexical import terms_for_query
from docqa.units import Level, Unit

ES_URL = os.environ.get("DOCQA_ES_URL")
REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.es, pytest.mark.skipif(not ES_URL, reason="DOCQA_ES_URL is not set")]


@pytest.fixture
def index():
    pytest.importorskip("elasticsearch")
    from docqa.lexical.elastic import ElasticIndex

    idx = ElasticIndex(ES_URL, f"docqa-test-{uuid.uuid4().hex[:10]}")
    yield idx
    idx.drop()


def units() -> list[Unit]:
    texts = [("d1", "劳动者提前三十日以书面形式通知用人单位，可以解除劳动合同。"),
             ("d1", "用人单位应当向劳动者支付经济补偿。"),
             ("d2", "Access to the server room requires badge XK-7731-Q."),
             ("d3", "国庆节放假七天。")]
    return [Unit(doc_id=d, text=t, unit_id=i, level=Level.SEGMENT if i % 2 else Level.SENTENCE)
            for i, (d, t) in enumerate(texts, 1)]


def test_add_search_delete(index) -> None:
    index.add(units())
    assert len(index) == 0, "nothing reaches the server before commit"
    index.commit()
    assert len(index) == 4
    hits = index.search(terms_for_query("解除劳动合同"), 5)
    assert hits[0][0] == 1 and all(score > 0 for _, score in hits)
    assert [u for u, _ in index.search(terms_for_query("XK-7731-Q"), 5)] == [3]  # whole-code token, exact
    assert [u for u, _ in index.search(terms_for_query("劳动者"), 5, levels=["segment"])] == [1]
    index.delete(["d1"])
    index.commit()
    assert len(index) == 2 and index.search(terms_for_query("劳动者"), 5) == []


def test_rollback_sends_nothing_and_replace_keeps_order(index) -> None:
    index.add(units())
    index.commit()
    index.delete(["d3"])
    index.rollback()
    index.commit()
    assert len(index) == 4
    index.delete(["d3"])  # replace d3: delete then add, in one commit
    index.add([Unit(doc_id="d3", text="春节放假八天。", unit_id=9)])
    index.commit()
    assert [u for u, _ in index.search(terms_for_query("放假"), 5)] == [9]


def test_full_ingest_and_search_through_the_cli(tmp_path: Path, embed_model: str) -> None:
    pytest.importorskip("elasticsearch")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 制度\n\n报销须在三十日内提交 ibexloom 凭证。\n", encoding="utf-8")
    (docs / "b.md").write_text("# Canteen\n\nLunch is served from noon on weekdays.\n", encoding="utf-8")
    env = {**os.environ, "DOCQA_HOME": str(tmp_path / "home"), "DOCQA_LEXICAL_BACKEND": "elasticsearch",
           "DOCQA_ES_URL": ES_URL, "HF_HUB_OFFLINE": "1"}

    def docqa(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)

    r = docqa("ingest", str(docs), "--kb", "esdemo", "--no-progress")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "home" / "esdemo" / "manifest.json").read_text())
    assert manifest["build"]["lexical_backend"] == "elasticsearch" and manifest["es_index"].startswith("docqa-esdemo-")
    from docqa.lexical.elastic import ElasticIndex

    try:
        r = docqa("search", "ibexloom", "--kb", "esdemo", "--mode", "keyword", "--json")
        assert r.returncode == 0, r.stderr
        hits = json.loads(r.stdout)
        assert hits and "ibexloom" in hits[0]["text"] and hits[0]["source"].endswith("a.md")
        assert docqa("delete", str(docs / "a.md"), "--kb", "esdemo").returncode == 0
        r = docqa("search", "ibexloom", "--kb", "esdemo", "--mode", "keyword", "--json")
        assert r.returncode == 0 and json.loads(r.stdout) == []
    finally:
        ElasticIndex(ES_URL, manifest["es_index"]).drop()
