"""docqa ingestion: files -> documents -> units -> a KB commit (loaders, structure, chunking, key info,
the pipeline and the KB commands). The KB format, models and search it writes for live in ``docqa``.
"""
