"""docqa's core library: what ingestion, the service and fine-tuning all stand on.

Settings, text rules (``docqa.text``), the document/unit model and pinpoint labels, the KB format and
its indexes (``docqa.kb``, ``docqa.vector_index``, ``docqa.lexical``), models (``docqa.models``),
search and filters, screening. It imports nothing of ``ingest``, ``service`` or ``finetune``; heavy
libraries are imported only when used.
"""

__version__ = "0.1.0"
