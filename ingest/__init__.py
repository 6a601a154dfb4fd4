"""docqa ingestion: documents -> knowledge base (units, FAISS vectors, keyword index).

Owns the KB format, the embedder wrapper and the search backends; ``service`` and ``finetune``
use the functions re-exported here. Heavy libraries are imported only when used.
"""

__version__ = "0.1.0"
