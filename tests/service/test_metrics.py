"""``/metrics`` (issue #11): Prometheus text with requests by route template and status, answer stages,
outcomes and fallback causes; no KB name or text in any label. The registry is the process's, so the
test compares counts before and after its own requests."""

from __future__ import annotations

import httpx
import pytest
from llm_support import Served
from prometheus_client.parser import text_string_to_metric_families

from docqa.settings import load_settings

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXT = "# 保密制度\n\n本制度适用于 zebracorn 项目组的全体成员，成员应当遵守保密义务，违者扣发当月奖金。\n"


def samples(srv) -> dict[tuple, float]:
    r = httpx.get(f"{srv.url}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(after: dict, before: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embed_model: str):
    from ingest.pipeline import ingest_paths
    from service.app import create_app

    root = tmp_path_factory.mktemp("metrics")
    (root / "rules.md").write_text(TEXT, encoding="utf-8")
    home = root / "home"
    ingest_paths([root / "rules.md"], "secretkb", load_settings(home=home, embed_model=MODEL, embed_backend="torch",
                                                                 keyphrases=0), progress=False)
    with Served(create_app(settings=load_settings(home=home))) as srv:
        srv.wait_ready(timeout=300)
        yield srv


def test_requests_stages_outcomes_and_causes_are_counted(server) -> None:
    before = samples(server)
    post = lambda path, body: httpx.post(f"{server.url}{path}", json=body, timeout=60)  # noqa: E731
    assert post("/v1/chat", {"question": "zebracorn 项目组成员应当遵守什么义务？"}).status_code == 200
    assert post("/v1/chat", {"question": "你们的产品是不是稳赚不赔？"}).json()["fallback"] is True
    assert post("/v1/search", {"query": "保密", "kb": "nope"}).status_code == 404
    assert httpx.get(f"{server.url}/no/such/path", timeout=30).status_code == 404
    after = samples(server)
    assert delta(after, before, "docqa_http_requests_total", route="/v1/chat", method="POST", status="200") == 2
    assert delta(after, before, "docqa_http_requests_total", route="/v1/search", method="POST", status="404") == 1
    assert delta(after, before, "docqa_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta(after, before, "docqa_http_request_seconds_count", route="/v1/chat") == 2
    answered = delta(after, before, "docqa_answers_total", outcome="answered")
    refused = delta(after, before, "docqa_answers_total", outcome="refused")
    assert answered + refused == 1 and delta(after, before, "docqa_answers_total", outcome="fallback") == 1
    assert delta(after, before, "docqa_fallbacks_total", cause="blocklist") == 1
    for stage in ("retrieve", "generate", "filter"):
        assert delta(after, before, "docqa_answer_stage_seconds_count", stage=stage) == 1, stage


def test_no_label_carries_a_kb_name_or_text(server) -> None:
    assert httpx.post(f"{server.url}/v1/chat", json={"question": "zebracorn 的保密义务是什么？"}, timeout=60).is_success
    body = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'route="/v1/chat"' in body and "docqa_answers_total" in body  # the request was counted
    for secret in ("secretkb", "zebracorn", "保密"):
        assert secret not in body
