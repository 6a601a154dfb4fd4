"""HTTP routes: thin functions that validate, call ``service.answering`` / ``ingest.search``, and shape JSON."""
