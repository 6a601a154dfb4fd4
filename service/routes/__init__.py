"""HTTP routes: thin functions that validate, call ``service.answering`` / ``docqa.search``, and shape JSON."""
