"""docqa service: HTTP API (FastAPI), answering, prompts, LLM backends, compliance filter."""
