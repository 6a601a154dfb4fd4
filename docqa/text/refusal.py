"""The refusal: what docqa says when its documents do not answer a question, and how to recognise it.

The same wording is the extractive answerer's refusal, what the qa_*.j2 prompts ask an LLM to write,
and what ``docqa finetune llm`` teaches (``build-rag-sft``), so an answer from any backend is recognised
as a refusal by ``is_refusal``.
"""

from __future__ import annotations

from docqa.text.language import Lang, lang_of

REFUSAL = {Lang.ZH: "根据已知信息无法回答该问题",
           Lang.EN: "The known information is not sufficient to answer this question."}
REFUSAL_ZH, REFUSAL_EN = REFUSAL[Lang.ZH], REFUSAL[Lang.EN]

# How LLMs say it in other words (the prompt's wording first)
REFUSAL_PHRASES = ("无法回答", "没有提供足够的相关信息", "没有足够的相关信息", "未提供足够", "无法从中得到答案",
                   "not sufficient to answer", "cannot be answered", "can't be answered", "does not contain enough",
                   "no information about", "not enough information")


def refusal_message(question: str) -> str:
    """The refusal in the question's language."""
    return REFUSAL[lang_of(question)]


def is_refusal(text: str) -> bool:
    """The answer says the documents do not answer the question."""
    low = text.lower()
    return any(p in low for p in REFUSAL_PHRASES)
