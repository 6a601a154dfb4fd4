"""Client-side integrations: retrievers over a running docqa server's ``POST /v1/search`` for LangChain
(``docqa.integrations.langchain.DocqaRetriever``, extra ``langchain``) and LlamaIndex
(``docqa.integrations.llamaindex.DocqaRetriever``, extra ``llamaindex``). They import nothing heavy: only
httpx and their framework's core package."""
