"""Render a conversation with the base model's chat template and mask the loss to the answers.

Training text must be byte-identical to what serving sends the model, so we never hand-write a
prompt format: ``tokenizer.apply_chat_template`` renders it. To find the answer tokens we render
the conversation up to each assistant turn twice, with and without that turn; the characters in
between are the turn (its content plus the template's end-of-turn marker, which teaches the model
to stop). Tokens starting inside such a span keep their id as label; every other token (system,
user, retrieved context, template markup) gets -100 and costs no loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from docqa.errors import UserError
from finetune.llm.data import Conversation

IGNORE_INDEX = -100


class AssistantTurns(StrEnum):
    """Which assistant turns of a multi-turn conversation are trained on.

    ``all``: every turn (more signal per conversation; right when every turn is good data).
    ``last``: only the final turn (right when earlier turns come from a weaker model or from logs).
    """

    ALL = "all"
    LAST = "last"


class TemplateError(UserError):
    """The tokenizer's chat template cannot be used for masked SFT."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def to_features(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels, "attention_mask": [1] * len(self.input_ids)}


def assistant_spans(tokenizer, conv: Conversation, turns: AssistantTurns = AssistantTurns.ALL) -> tuple[str, list]:
    """The rendered text and the ``(start, end)`` character spans of the trained assistant turns."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise TemplateError("the tokenizer has no chat template; use an instruct model or set one")
    text = tokenizer.apply_chat_template(conv, tokenize=False)
    idx = [i for i, m in enumerate(conv) if m["role"] == "assistant"]
    if turns == AssistantTurns.LAST:
        idx = idx[-1:]
    spans = []
    for i in idx:
        prefix = tokenizer.apply_chat_template(conv[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(conv[:i + 1], tokenize=False)
        if not (text.startswith(through) and through.startswith(prefix)):
            raise TemplateError("the chat template renders earlier turns differently once later turns are "
                                "added (e.g. it drops past reasoning); answer-only masking needs a template "
                                "whose renderings are prefixes of each other")
        end = len(prefix) + len(through[len(prefix):].rstrip())
        spans.append((len(prefix), end))
    return text, spans


def encode(tokenizer, conv: Conversation, *, turns: AssistantTurns = AssistantTurns.ALL,
           max_length: int | None = None) -> Encoded | None:
    """Token ids and labels of one conversation; ``None`` when it is longer than ``max_length``.

    Over-long examples are dropped rather than cut: cutting the right end removes the answer and
    cutting the left removes the question or the passages the answer rests on.
    """
    text, spans = assistant_spans(tokenizer, conv, turns)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if max_length is not None and len(ids) > max_length:
        return None
    labels = [IGNORE_INDEX] * len(ids)
    for j, (start, _end) in enumerate(offsets):
        if any(s <= start < e for s, e in spans):
            labels[j] = ids[j]
    if all(lab == IGNORE_INDEX for lab in labels):
        return None
    return Encoded(list(ids), labels)


def encode_all(tokenizer, convs: list[Conversation], *, turns: AssistantTurns = AssistantTurns.ALL,
               max_length: int | None = None, progress: bool = True) -> tuple[list[dict], int]:
    """Features for every conversation, and how many were dropped for length."""
    from tqdm import tqdm

    feats, dropped = [], 0
    for conv in tqdm(convs, desc="tokenize", leave=False, disable=not progress or None):
        e = encode(tokenizer, conv, turns=turns, max_length=max_length)
        if e is None:
            dropped += 1
        else:
            feats.append(e.to_features())
    return feats, dropped
