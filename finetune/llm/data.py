"""SFT records -> conversations (lists of ``{"role", "content"}``), from three common formats.

* alpaca: ``{"instruction", "input", "output"}`` (``input`` and ``system`` optional);
* multi-turn: ``{"prompt", "response", "history": [[user, assistant], ...]}`` (``system`` optional);
* chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``.

Every record becomes the same conversation shape, so one renderer (masking.py) serves all three.
``auto`` picks the format per record from its keys, which lets a user concatenate files.
Errors name the file, the line and the field.
"""

from __future__ import annotations

import random
from enum import StrEnum
from pathlib import Path

from docqa.errors import UserError
from finetune.records import DataFormatError, iter_records, require_str

Conversation = list[dict[str, str]]
_ROLES = ("system", "user", "assistant")


class DataFormat(StrEnum):
    AUTO = "auto"
    ALPACA = "alpaca"
    MULTI_TURN = "multi-turn"
    CHAT = "chat"


def detect_format(rec: dict) -> DataFormat | None:
    if "messages" in rec:
        return DataFormat.CHAT
    if "instruction" in rec or "output" in rec:
        return DataFormat.ALPACA
    if "prompt" in rec or "response" in rec:
        return DataFormat.MULTI_TURN
    return None


def load_conversations(path: str | Path, fmt: DataFormat = DataFormat.AUTO) -> list[Conversation]:
    """Every record of ``path`` as a conversation ending with an assistant turn."""
    convs: list[Conversation] = []
    for line, rec in iter_records(path):
        kind = detect_format(rec) if fmt == DataFormat.AUTO else fmt
        if kind is None:
            raise DataFormatError(path, line, "unknown record: expected alpaca {instruction,input,output}, "
                                              "multi-turn {prompt,response,history} or chat {messages}")
        convs.append(_PARSERS[kind](path, line, rec))
    if not convs:
        raise DataFormatError(path, 0, "no records found")
    return convs


def _system(path, line, rec: dict) -> Conversation:
    if rec.get("system") in (None, ""):
        return []
    return [{"role": "system", "content": require_str(path, line, rec, "system")}]


def _alpaca(path, line, rec: dict) -> Conversation:
    instruction = require_str(path, line, rec, "instruction")
    extra = rec.get("input") or ""
    if not isinstance(extra, str):
        raise DataFormatError(path, line, f"'input' must be a string, got {type(extra).__name__}")
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return [*_system(path, line, rec), {"role": "user", "content": user},
            {"role": "assistant", "content": require_str(path, line, rec, "output")}]


def _multi_turn(path, line, rec: dict) -> Conversation:
    conv = _system(path, line, rec)
    history = rec.get("history") or []
    if not isinstance(history, list):
        raise DataFormatError(path, line, "'history' must be a list of [user, assistant] pairs")
    for i, turn in enumerate(history):
        if not (isinstance(turn, list | tuple) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise DataFormatError(path, line, f"history[{i}] must be a [user, assistant] pair of strings")
        conv += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    conv += [{"role": "user", "content": require_str(path, line, rec, "prompt")},
             {"role": "assistant", "content": require_str(path, line, rec, "response")}]
    return conv


def _chat(path, line, rec: dict) -> Conversation:
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise DataFormatError(path, line, "'messages' must be a non-empty list")
    conv: Conversation = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise DataFormatError(path, line, f"messages[{i}] must be {{\"role\": system|user|assistant, "
                                              "\"content\": string}")
        if m["role"] == "system" and i != 0:
            raise DataFormatError(path, line, f"messages[{i}]: a system message may only come first")
        conv.append({"role": m["role"], "content": m["content"]})
    if conv[-1]["role"] != "assistant":
        raise DataFormatError(path, line, "the last message must be the assistant's (the training target)")
    if not any(m["role"] == "user" for m in conv):
        raise DataFormatError(path, line, "no user message")
    return conv


_PARSERS = {DataFormat.ALPACA: _alpaca, DataFormat.MULTI_TURN: _multi_turn, DataFormat.CHAT: _chat}


def parse_mix(spec: str) -> tuple[str, float]:
    """``FILE:RATIO`` -> (file, ratio). RATIO is general rows per domain row (``1`` = 1:1)."""
    path, sep, ratio = spec.rpartition(":")
    try:
        value = float(ratio)
    except ValueError:
        value = -1.0
    if not sep or not path or value <= 0:
        raise UserError(f"--mix expects FILE:RATIO with RATIO > 0 (e.g. general.json:1 for 1:1), got {spec!r}")
    return path, value


def mix(domain: list[Conversation], general: list[tuple[list[Conversation], float]], *,
        seed: int = 0) -> list[Conversation]:
    """Domain data plus, per general set, ``ratio * len(domain)`` rows sampled from it, shuffled.

    Mixing general instructions in (1:1 is the common SFT choice; 0.2-0.5 when the domain set is
    large) keeps the tuned model from forgetting how to follow ordinary instructions. A general set
    smaller than asked for is used whole.
    """
    rng = random.Random(seed)
    out = list(domain)
    for rows, ratio in general:
        n = min(len(rows), int(round(ratio * len(domain))))
        out += rng.sample(rows, n)
    rng.shuffle(out)
    return out
