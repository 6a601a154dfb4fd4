"""`docqa finetune llm | build-rag-sft | merge`: LoRA SFT of the answering LLM.

data.py reads alpaca / multi-turn / chat records into conversations; masking.py renders them with
the base model's chat template and masks everything but the answer; train.py runs transformers'
Trainer with a peft adapter; rag_sft.py builds serving-shaped RAG training data from a KB;
merge.py folds an adapter into its base model.
"""
