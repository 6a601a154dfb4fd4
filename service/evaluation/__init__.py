"""``docqa eval``: a user measures their own knowledge base, sees it as a report, and gates changes on it.

- ``dataset``: eval sets (JSONL rows) read with line-numbered errors;
- ``make``: an eval set built from the KB itself (LLM questions or cloze questions, plus unanswerable
  ones from held-out documents);
- ``runner``: every question through the same code as ``/v1/chat`` (screening, retrieval, evidence,
  LLM, compliance), per-question rows written as they finish (``--resume`` continues);
- ``metrics``: the measures, one implementation (bench/ and the fine-tune reports import them);
- ``report``: metrics.json, report.md and plots; baseline comparison (exit status 3 on a regression);
- ``calibrate``: the refusal threshold a KB's own questions call for, written into its manifest.
"""
