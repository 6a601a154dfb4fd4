"""docqa's MCP server with the official ``mcp`` SDK's client: over streamable HTTP at ``/mcp`` of a real
``docqa serve`` app (keys required) and over stdio (``docqa mcp`` started as a client starts it). The client lists
and calls the tools; each tool has exactly the key's rights (KBs, groups); a request without a key is refused at
the door."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

pytest.importorskip("mcp", reason="the mcp SDK is a dependency of docqa: `bash deploy/install.sh` installs it")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamablehttp_client  # noqa: E402

TOOLS = {"search", "ask", "list_kbs", "get_document"}


@pytest.fixture(scope="module")
def served(integration_server):
    return integration_server


def payload(result) -> dict:
    """A tool result's JSON (structured content, else its text)."""
    assert not result.isError, result.content
    if result.structuredContent is not None:
        return result.structuredContent.get("result", result.structuredContent)
    return json.loads(result.content[0].text)


def error_text(result) -> str:
    assert result.isError, result
    return " ".join(getattr(c, "text", "") for c in result.content)


async def over_http(url: str, key: str, calls: list[tuple[str, dict]]):
    async with streamablehttp_client(f"{url}/mcp", headers={"Authorization": f"Bearer {key}"}) as (r, w, _):
        async with ClientSession(r, w) as session:
            await session.initialize()
            tools = await session.list_tools()
            return tools, [await session.call_tool(name, args) for name, args in calls]


def test_the_client_lists_and_calls_the_tools_over_http(served) -> None:
    srv, _, keys = served
    tools, (found, kbs, answer) = anyio.run(over_http, srv.url, keys["regs"], [
        ("search", {"query": "报销期限", "kb": "regs", "k": 3}), ("list_kbs", {}),
        ("ask", {"question": "年休假有几天？", "kb": "regs"})])
    assert {t.name for t in tools.tools} == TOOLS
    schema = {t.name: t.inputSchema for t in tools.tools}["search"]
    assert "query" in schema["required"] and schema["properties"]["k"]["maximum"] == 100
    hits = httpx.post(f"{srv.url}/v1/search", json={"query": "报销期限", "kb": "regs", "k": 3}, timeout=60,
                      headers={"Authorization": f"Bearer {keys['regs']}"}).json()["hits"]
    assert [h["unit_id"] for h in payload(found)["hits"]] == [h["unit_id"] for h in hits]
    assert [k["name"] for k in payload(kbs)["kbs"]] == ["regs"]
    ans = payload(answer)
    assert not ans["refused"] and "五天" in ans["answer"] and ans["citations"][0]["source"] == "leave.md", ans


def test_each_tool_has_exactly_the_keys_rights(served) -> None:
    srv, _, keys = served
    salary = next(h for h in httpx.post(f"{srv.url}/v1/search", timeout=60, json={
        "query": "薪酬等级表", "kb": "regs", "k": 5}, headers={"Authorization": f"Bearer {keys['hr']}"}).json()["hits"]
        if h["source"] == "salary.md")
    _, (hidden, wrong_kb, found_hr) = anyio.run(over_http, srv.url, keys["regs"], [
        ("get_document", {"kb": "regs", "doc_id": salary["doc_id"]}),
        ("search", {"query": "年假", "kb": "other"}),
        ("search", {"query": "薪酬等级表", "kb": "regs", "k": 5})])
    assert "no document" in error_text(hidden)  # hr-only: as if it did not exist
    assert "no access to knowledge base 'other'" in error_text(wrong_kb)
    assert "salary.md" not in [h["source"] for h in payload(found_hr)["hits"]]
    _, (doc,) = anyio.run(over_http, srv.url, keys["hr"],
                          [("get_document", {"kb": "regs", "doc_id": salary["doc_id"]})])
    assert "薪酬等级表" in payload(doc)["text"]


def test_bad_arguments_are_tool_errors_with_the_reason(served) -> None:
    srv, _, keys = served
    _, (blank, big_k) = anyio.run(over_http, srv.url, keys["regs"], [
        ("search", {"query": "   ", "kb": "regs"}), ("search", {"query": "年假", "kb": "regs", "k": 1000})])
    assert "empty" in error_text(blank)
    assert "k" in error_text(big_k)


def test_no_key_or_a_bad_key_is_refused_at_the_door(served) -> None:
    srv, _, _ = served
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    r = httpx.post(f"{srv.url}/mcp", json=body, headers=headers, timeout=30)
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    r = httpx.post(f"{srv.url}/mcp", json=body, headers={**headers, "Authorization": "Bearer dqa_x_y"}, timeout=30)
    assert r.status_code == 401


def _docqa() -> str:
    return str(Path(sys.executable).with_name("docqa"))


def test_stdio_serves_the_same_tools_with_the_keys_rights(served) -> None:
    _, home, keys = served
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env.update(DOCQA_HOME=str(home), HF_HUB_OFFLINE="1", DOCQA_API_KEY=keys["regs"])

    async def run():
        params = StdioServerParameters(command=_docqa(), args=["mcp"], env=env, cwd=str(home.parent))
        async with stdio_client(params) as (r, w), ClientSession(r, w) as session:
            await session.initialize()
            tools = await session.list_tools()
            return tools, await session.call_tool("list_kbs", {}), await session.call_tool(
                "search", {"query": "年休假", "kb": "regs", "k": 2})

    tools, kbs, found = anyio.run(run)
    assert {t.name for t in tools.tools} == TOOLS
    assert [k["name"] for k in payload(kbs)["kbs"]] == ["regs"]
    assert payload(found)["hits"][0]["source"] == "leave.md"


def test_stdio_in_a_home_with_keys_needs_one(served) -> None:
    _, home, _ = served
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env.update(DOCQA_HOME=str(home), HF_HUB_OFFLINE="1")
    out = subprocess.run([_docqa(), "mcp"], env=env, cwd=home.parent, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert out.returncode != 0 and "DOCQA_API_KEY" in out.stderr and "Traceback" not in out.stderr
    env["DOCQA_API_KEY"] = "dqa_nope_nope"
    out = subprocess.run([_docqa(), "mcp"], env=env, cwd=home.parent, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert out.returncode != 0 and "invalid, revoked or expired" in out.stderr
