"""LLM backends behind one small interface (``LLM``: ``generate`` and ``stream``).

``openai`` (any OpenAI-compatible server, vLLM with LoRA adapters by model name),
``transformers`` (in-process, CPU/CUDA, PEFT, GGUF), ``vllm`` (in-process engine, GPU).
Backend modules import their heavy dependencies only when a model loads.
"""

from service.llm.base import LLM, GenParams, Health, LLMError, LLMUnavailable, Message
from service.llm.factory import describe, kb_llm_settings, llm_for

__all__ = ["LLM", "GenParams", "Health", "LLMError", "LLMUnavailable", "Message", "describe", "kb_llm_settings",
           "llm_for"]
