"""A LlamaIndex retriever over a docqa server (extra ``llamaindex``: ``pip install 'docqa[llamaindex]'``)::

    from docqa.integrations.llamaindex import DocqaRetriever
    retriever = DocqaRetriever(url="http://127.0.0.1:8000", api_key=os.environ["DOCQA_API_KEY"], kb="law", k=5)
    nodes = retriever.retrieve("试用期最长多久？")   # list[NodeWithScore], best first

Each node is a ``TextNode`` with the passage text, ``id_`` ``kb:unit_id`` and docqa's citation fields in
``metadata`` (kb, doc_id, unit_id, source, title, label such as 第十九条, page, heading_path); the score is
docqa's fused score. Documents outside the key's rights are never returned.
"""

from __future__ import annotations

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from docqa.integrations.client import DocqaRequestError, SearchSpec, asearch, citation_metadata, search

__all__ = ["DocqaRequestError", "DocqaRetriever"]


class DocqaRetriever(BaseRetriever):
    """``POST {url}/v1/search`` as a LlamaIndex retriever (see the module docstring)."""

    def __init__(self, url: str, api_key: str | None = None, kb: str | None = None, k: int = 5,
                 mode: str = "hybrid", filters: dict | None = None, timeout: float = 30.0, **kwargs):
        self._spec = SearchSpec(url, api_key, kb, k, mode, filters, timeout)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return _nodes(*search(self._spec, query_bundle.query_str))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return _nodes(*await asearch(self._spec, query_bundle.query_str))


def _nodes(kb: str, hits: list[dict]) -> list[NodeWithScore]:
    # the citation fields stay out of the text an LLM or embedder is given (they ride along as metadata)
    keys = ["kb", "doc_id", "unit_id", "heading_path", "score", "rerank_score", "exact"]
    return [NodeWithScore(node=TextNode(text=h["text"], id_=f"{kb}:{h['unit_id']}", metadata=citation_metadata(kb, h),
                                        excluded_llm_metadata_keys=keys, excluded_embed_metadata_keys=keys),
                          score=h.get("score"))
            for h in hits]
