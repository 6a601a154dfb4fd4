"""Screening: text that must not be treated as plain knowledge, found at ingestion and at answer time.

Three kinds of flag, one function (``screen_text``) for both callers:

- ``blocklist``: a claim the blocklist forbids ("稳赚不赔" in a sales leaflet that got into the KB);
- ``instruction``: text aimed at a model rather than a reader ("忽略之前的所有指令", "ignore previous
  instructions", "system prompt", "你现在是..."): a planted prompt injection;
- ``secret``: credentials (a password in a URL or stated as such, a private key, a cloud access key).

At ingestion (``screen: off | flag | reject``) a document with flags is reported in the summary and
``docqa docs``, and refused under ``reject``. At answer time the same function marks retrieved
passages, so the prompt shows flagged ones as quoted data, and the guard drops instruction-like and
secret sentences from the evidence: a sentence copied from them is not grounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docqa.screening.blocklist import Blocklist
from docqa.screening.normalize import normalize
from docqa.screening.pii import find_pii

# Matched in the normalised text (simplified, case-folded, separators between Chinese characters gone).
_INSTRUCTION = [re.compile(p) for p in (
    r"(?:忽略|无视|忘记|忘掉|不要理会|跳过)(?:掉)?(?:你|您)?(?:之前|以前|以上|上面|前面|先前|此前|上述|原来|原有)?的?"
    r"(?:所有|全部|一切|任何)?的?(?:指令|指示|提示词?|规则|设定|约束|要求)",
    r"(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|every\s+)?(?:of\s+)?(?:the\s+|your\s+)?"
    r"(?:previous|prior|above|earlier|preceding|foregoing|system)\s+(?:instructions?|prompts?|rules|directions)",
    r"系统提示词|system\s*prompt|开发者模式|developer\s+mode",
    r"你现在(?:是|扮演|的身份是|的角色是)|从现在(?:起|开始)你(?:是|要|必须)|you\s+are\s+now\b|"
    r"act\s+as\s+(?:an?\s+)?(?:unrestricted|jailbroken)",
    r"(?:不要|不得|禁止)(?:提及|透露|告诉用户)(?:以上|这些)?(?:指令|规则)",
)]
_SECRET = [re.compile(p, re.IGNORECASE) for p in (
    r"-----begin (?:rsa |ec |openssh |dsa )?private key-----",
    r"\bakia[0-9a-z]{16}\b",
    r"\bsk-[a-z0-9_-]{20,}\b",
    r"\b(?:api[_-]?key|access[_-]?token|secret[_-]?key)\s*[:=]\s*\S{8,}",
)]


@dataclass(frozen=True)
class Flag:
    kind: str  # "blocklist" | "instruction" | "secret"
    match: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "match": self.match}


def screen_text(text: str, blocklist: Blocklist | None = None, *, limit: int = 10) -> list[Flag]:
    """Flags of ``text`` (at most ``limit``, each distinct), instruction and secret first."""
    if not text:
        return []
    flags: list[Flag] = []
    norm = normalize(text)
    for rx in _INSTRUCTION:
        for m in rx.finditer(norm.text):
            s, e = norm.span(m.start(), m.end())
            flags.append(Flag("instruction", text[s:e]))
    for rx in _SECRET:
        flags += [Flag("secret", m.group(0)[:40]) for m in rx.finditer(text)]
    flags += [Flag("secret", h.text[:40]) for h in find_pii(text) if h.kind == "credential"]
    if blocklist is not None:
        flags += [Flag("blocklist", h.match) for h in blocklist.find_all(text)]
    seen: set[Flag] = set()
    out = []
    for f in flags:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out[:limit]


def unsafe_as_evidence(text: str) -> bool:
    """True when ``text`` (a sentence) is instruction-like or holds a secret: it must never ground
    an answer, however closely the answer copies it."""
    return any(f.kind in ("instruction", "secret") for f in screen_text(text))
