"""API keys and rights: ``keys`` (the key file, hashes, roles), ``access`` (the FastAPI dependency and the
route checks), ``cli`` (``docqa keys``). Kept import-light: ``docqa --help`` loads none of FastAPI."""
