"""Dify's External Knowledge API (``POST /retrieval``) against a real server with API keys: the documented
request examples get the documented response shape; scores are 0-1 and the threshold cuts; every Dify
comparison operator either filters as it says or is refused; errors come in Dify's shape with its codes; a key
never sees a KB or a document outside its rights."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def dify(integration_server):
    srv, _, keys = integration_server
    return srv, keys


def retrieve(srv, key: str | None, body, *, raw: bytes | None = None, headers: dict | None = None) -> httpx.Response:
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    if raw is not None:
        return httpx.post(f"{srv.url}/retrieval", content=raw, headers={**h, "Content-Type": "application/json"},
                          timeout=60)
    return httpx.post(f"{srv.url}/retrieval", json=body, headers=h, timeout=60)


def ask(query: str, top_k: int = 5, threshold: float = 0.0, cond: dict | None = None, kb: str = "regs") -> dict:
    body = {"knowledge_id": kb, "query": query, "retrieval_setting": {"top_k": top_k, "score_threshold": threshold}}
    if cond is not None:
        body["metadata_condition"] = cond
    return body


def sources(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [rec["metadata"]["source"] for rec in r.json()["records"]]


def test_the_documented_example_gets_the_documented_shape(dify) -> None:
    srv, keys = dify
    r = retrieve(srv, keys["regs"], ask("年休假有几天？", top_k=2, threshold=0.0))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    records = r.json()["records"]
    assert 1 <= len(records) <= 2
    for rec in records:
        assert set(rec) == {"content", "score", "title", "metadata"}
        assert isinstance(rec["content"], str) and rec["content"] and isinstance(rec["title"], str)
        assert isinstance(rec["metadata"], dict) and 0.0 <= rec["score"] <= 1.0
        assert {"doc_id", "source", "label", "page"} <= set(rec["metadata"])
    assert records[0]["metadata"]["source"] == "leave.md" and "年休假五天" in records[0]["content"]
    assert [x["score"] for x in records] == sorted((x["score"] for x in records), reverse=True)
    # the score means something: a threshold above the best score returns nothing, at it the best record
    best = records[0]["score"]
    assert retrieve(srv, keys["regs"], ask("年休假有几天？", threshold=min(1.0, best + 1e-3))).json()["records"] == [] \
        or best == 1.0
    assert sources(retrieve(srv, keys["regs"], ask("年休假有几天？", threshold=best)))[0] == "leave.md"


def test_the_search_hits_and_the_records_agree(dify) -> None:
    srv, keys = dify
    hits = httpx.post(f"{srv.url}/v1/search", json={"query": "报销期限", "kb": "regs", "k": 3}, timeout=60,
                      headers={"Authorization": f"Bearer {keys['regs']}"}).json()["hits"]
    assert [h["source"] for h in hits] == sources(retrieve(srv, keys["regs"], ask("报销期限", top_k=3)))


@pytest.mark.parametrize(("cond", "want"), [
    ({"conditions": [{"name": "department", "comparison_operator": "is", "value": "finance"}]}, {"travel.md"}),
    ({"conditions": [{"name": ["department"], "comparison_operator": "is not", "value": "finance"}]}, {"leave.md"}),
    ({"conditions": [{"name": "tags", "comparison_operator": "contains", "value": "leave"}]}, {"leave.md"}),
    ({"conditions": [{"name": "tags", "comparison_operator": "not contains", "value": "leave"}]}, {"travel.md"}),
    ({"conditions": [{"name": "title", "comparison_operator": "start with", "value": "差旅"}]}, {"travel.md"}),
    ({"conditions": [{"name": "title", "comparison_operator": "end with", "value": "制度"}]}, {"leave.md"}),
    ({"conditions": [{"name": "department", "comparison_operator": "in", "value": ["finance", "legal"]}]},
     {"travel.md"}),
    ({"conditions": [{"name": "department", "comparison_operator": "not in", "value": ["finance"]}]}, {"leave.md"}),
    ({"conditions": [{"name": "groups", "comparison_operator": "empty"}]}, {"leave.md", "travel.md"}),
    ({"conditions": [{"name": "tags", "comparison_operator": "not empty"}]}, {"leave.md", "travel.md"}),
    ({"conditions": [{"name": "level", "comparison_operator": ">", "value": 3}]}, {"travel.md"}),
    ({"conditions": [{"name": "level", "comparison_operator": "≤", "value": "2"}]}, {"leave.md"}),
    ({"conditions": [{"name": "level", "comparison_operator": "=", "value": 5}]}, {"travel.md"}),
    ({"conditions": [{"name": "level", "comparison_operator": "≠", "value": 5}]}, {"leave.md"}),
    ({"conditions": [{"name": "date", "comparison_operator": "before", "value": "2022-01-01"}]}, {"travel.md"}),
    ({"conditions": [{"name": "date", "comparison_operator": "after", "value": 1640995200}]}, {"leave.md"}),  # 2022
    ({"logical_operator": "or", "conditions": [
        {"name": "department", "comparison_operator": "is", "value": "finance"},
        {"name": "tags", "comparison_operator": "contains", "value": "leave"}]}, {"leave.md", "travel.md"}),
    ({"logical_operator": "and", "conditions": [
        {"name": "department", "comparison_operator": "is", "value": "hr"},
        {"name": "date", "comparison_operator": "after", "value": "2023-01-01"}]}, {"leave.md"}),
])
def test_each_comparison_operator_filters_inside_retrieval(dify, cond: dict, want: set[str]) -> None:
    srv, keys = dify
    got = set(sources(retrieve(srv, keys["regs"], ask("年休假 报销 薪酬", top_k=10, cond=cond))))
    assert got == want, (cond, got)


def test_groups_hold_whatever_the_condition_says(dify) -> None:
    srv, keys = dify
    everything = ask("薪酬等级表 年休假", top_k=10, cond={"conditions": [
        {"name": "department", "comparison_operator": "is", "value": "hr"}]})
    assert set(sources(retrieve(srv, keys["regs"], everything))) == {"leave.md"}  # salary.md is hr-only
    assert set(sources(retrieve(srv, keys["hr"], everything))) == {"leave.md", "salary.md"}


@pytest.mark.parametrize(("key", "headers", "body", "status", "code"), [
    (None, {}, ask("年假"), 403, 1001),  # no Authorization header
    (None, {"Authorization": "Token abc"}, ask("年假"), 403, 1001),
    ("dqa_nope_nope", {}, ask("年假"), 403, 1002),
    ("regs", {}, ask("年假", kb="no-such-kb"), 404, 2001),
    ("other", {}, ask("年假", kb="regs"), 404, 2001),  # exists, but not this key's: told apart from nothing
    ("regs", {}, {"knowledge_id": "regs", "query": "年假"}, 400, 4001),  # retrieval_setting missing
    ("regs", {}, {"knowledge_id": "regs", "query": "年假", "retrieval_setting": {"top_k": 0}}, 400, 4001),
    ("regs", {}, ask("   "), 400, 4001),
    ("regs", {}, ask("年假", cond={"conditions": [{"name": "x", "comparison_operator": "matches", "value": "a"}]}),
     400, 4002),
    ("regs", {}, ask("年假", cond={"conditions": [{"name": "x", "comparison_operator": "is"}]}), 400, 4001),
    ("regs", {}, ask("年假", cond={"conditions": [{"name": "x", "comparison_operator": ">", "value": "many"}]}),
     400, 4001),
])
def test_errors_come_in_difys_shape(dify, key, headers, body, status, code) -> None:
    srv, keys = dify
    r = retrieve(srv, keys.get(key, key), body, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error_code", "error_msg"} and r.json()["error_code"] == code, r.json()
    assert "Traceback" not in r.text


def test_a_body_that_is_not_json_is_a_4001(dify) -> None:
    srv, keys = dify
    for raw in (b"{not json", b"[1, 2]", "年假".encode()):
        r = retrieve(srv, keys["regs"], None, raw=raw)
        assert r.status_code == 400 and r.json()["error_code"] == 4001, r.text
