"""`docqa finetune embed`: train the embedding model on (query, passage) pairs from a file or a KB.

data.py reads pairs (FlagEmbedding JSONL or anchor/positive) or makes them from a KB's units;
mining.py adds hard negatives from the KB's hybrid index; train.py runs the
sentence-transformers trainer and measures the held-out split before and after.
"""
