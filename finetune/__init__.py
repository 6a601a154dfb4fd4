"""docqa fine-tuning jobs: the boundary (NSP) model, the embedding model and the LLM (LoRA SFT).

Each job reads top to bottom in its own module and reuses the frameworks' trainers
(sentence-transformers, transformers, peft). Heavy imports happen inside the jobs.
"""
