"""A LangChain retriever over a docqa server (extra ``langchain``: ``pip install 'docqa[langchain]'``)::

    from docqa.integrations.langchain import DocqaRetriever
    retriever = DocqaRetriever(url="http://127.0.0.1:8000", api_key=os.environ["DOCQA_API_KEY"], kb="law", k=5)
    docs = retriever.invoke("试用期最长多久？")   # list[Document], best first

Each ``Document`` holds the passage text and docqa's citation fields in ``metadata`` (kb, doc_id, unit_id,
source, title, label such as 第十九条, page, heading_path, score); its ``id`` is ``kb:unit_id``. Documents
outside the key's rights are never returned: the server filters them inside retrieval.
"""

from __future__ import annotations

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from docqa.integrations.client import DocqaRequestError, SearchSpec, asearch, citation_metadata, search

__all__ = ["DocqaRequestError", "DocqaRetriever"]


class DocqaRetriever(BaseRetriever):
    """``POST {url}/v1/search`` as a LangChain retriever (see the module docstring)."""

    url: str
    api_key: str | None = None
    kb: str | None = None
    k: int = 5
    mode: str = "hybrid"
    filters: dict | None = None
    timeout: float = 30.0

    def _spec(self) -> SearchSpec:
        return SearchSpec(self.url, self.api_key, self.kb, self.k, self.mode, self.filters, self.timeout)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return _documents(*search(self._spec(), query))

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return _documents(*await asearch(self._spec(), query))


def _documents(kb: str, hits: list[dict]) -> list[Document]:
    return [Document(page_content=h["text"], metadata=citation_metadata(kb, h), id=f"{kb}:{h['unit_id']}")
            for h in hits]
