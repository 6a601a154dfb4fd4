"""The LangChain and LlamaIndex retrievers (docqa/integrations) against a real docqa server with API keys: the
same top hits as ``/v1/search``, docqa's citation fields in the framework's metadata, the key's rights, sync and
async, and a refusal raised as ``DocqaRequestError`` with the server's message."""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytest.importorskip("langchain_core", reason="langchain-core is in docqa's dev extra (`bash deploy/install.sh`)")
pytest.importorskip("llama_index.core", reason="llama-index-core is in docqa's dev extra (`bash deploy/install.sh`)")

QUERIES = ("年休假有几天？", "报销期限", "薪酬等级表")


@pytest.fixture(scope="module")
def served(integration_server):
    srv, _, keys = integration_server
    return srv, keys


def search_ids(srv, key: str, query: str, k: int = 3) -> list[int]:
    r = httpx.post(f"{srv.url}/v1/search", json={"query": query, "kb": "regs", "k": k}, timeout=60,
                   headers={"Authorization": f"Bearer {key}"})
    return [h["unit_id"] for h in r.json()["hits"]]


def test_langchain_returns_the_search_hits_as_documents(served) -> None:
    from docqa.integrations.langchain import DocqaRetriever

    srv, keys = served
    retriever = DocqaRetriever(url=srv.url, api_key=keys["regs"], kb="regs", k=3)
    for q in QUERIES:
        docs = retriever.invoke(q)
        assert [d.metadata["unit_id"] for d in docs] == search_ids(srv, keys["regs"], q), q
    docs = retriever.invoke("年休假有几天？")
    top = docs[0]
    assert "年休假五天" in top.page_content and top.id == f"regs:{top.metadata['unit_id']}"
    assert top.metadata["source"] == "leave.md" and top.metadata["kb"] == "regs" and top.metadata["title"] == "年假制度"
    assert {"doc_id", "label", "page", "heading_path", "score"} <= set(top.metadata)
    assert [d.metadata["unit_id"] for d in asyncio.run(retriever.ainvoke("报销期限"))] == \
        search_ids(srv, keys["regs"], "报销期限")
    # rights: the hr-only document never comes back for a key without the group
    assert "salary.md" not in [d.metadata["source"] for d in retriever.invoke("薪酬等级表")]
    hr = DocqaRetriever(url=srv.url, api_key=keys["hr"], kb="regs", k=3)
    assert "salary.md" in [d.metadata["source"] for d in hr.invoke("薪酬等级表")]


def test_llamaindex_returns_the_search_hits_as_scored_nodes(served) -> None:
    from llama_index.core.schema import MetadataMode

    from docqa.integrations.llamaindex import DocqaRetriever

    srv, keys = served
    retriever = DocqaRetriever(url=srv.url, api_key=keys["regs"], kb="regs", k=3)
    for q in QUERIES:
        nodes = retriever.retrieve(q)
        assert [n.node.metadata["unit_id"] for n in nodes] == search_ids(srv, keys["regs"], q), q
    nodes = retriever.retrieve("年休假有几天？")
    assert "年休假五天" in nodes[0].node.get_content() and nodes[0].node.metadata["source"] == "leave.md"
    assert nodes[0].score == nodes[0].node.metadata["score"] and nodes[0].score >= nodes[-1].score
    assert "unit_id" not in nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)  # ids stay out of prompts
    assert [n.node.metadata["unit_id"] for n in asyncio.run(retriever.aretrieve("报销期限"))] == \
        search_ids(srv, keys["regs"], "报销期限")


def test_a_refusal_is_a_docqa_error_with_the_servers_message(served) -> None:
    from docqa.integrations.client import DocqaRequestError
    from docqa.integrations.langchain import DocqaRetriever as LC
    from docqa.integrations.llamaindex import DocqaRetriever as LI

    srv, keys = served
    with pytest.raises(DocqaRequestError, match="no access to knowledge base 'regs'") as e:
        LC(url=srv.url, api_key=keys["other"], kb="regs").invoke("年假")
    assert e.value.status == 403
    with pytest.raises(DocqaRequestError, match="invalid, revoked or expired"):
        LI(url=srv.url, api_key="dqa_nope_nope", kb="regs").retrieve("年假")
    with pytest.raises(DocqaRequestError, match="could not be reached"):
        LC(url="http://127.0.0.1:9", kb="regs", timeout=2).invoke("年假")
    with pytest.raises(ValueError, match="k must be 1-100"):
        LI(url=srv.url, k=0)
