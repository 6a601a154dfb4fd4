"""docqa inside the tools teams already run: Dify's External Knowledge API (``dify.py``, route in
service/routes/dify.py) and the Model Context Protocol server (``mcp_server.py``). The Python retrievers for
LangChain and LlamaIndex are client code, in ``docqa/integrations/``."""
