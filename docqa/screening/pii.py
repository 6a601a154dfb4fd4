"""Personal data and credentials in text: found with validation, masked for display.

Kinds (each validated, so a long number is not a card or an ID just by its length):

- ``id_card``: Chinese resident ID (18 characters: region, a real birth date, sequence, and the
  ISO 7064 MOD 11-2 check character);
- ``mobile``: mainland mobile numbers (1[3-9]x, 11 digits; +86 and spaces or dashes allowed);
- ``landline``: area code 0xx/0xxx with a 7-8 digit local number ("010-12345678", "(0755)1234567");
- ``bank_card``: 16-19 digits (spaces or dashes between groups allowed) passing the Luhn check;
- ``email``;
- ``credential``: the password in a URL (``mysql://user:PASSWORD@host``) and password statements
  ("密码是 Abc12345", "password: hunter22"); only the secret itself is masked.

``mask_pii`` keeps enough to recognise a value without revealing it: 138****5678,
110105**********1X, ****1234 for a card, a***@example.com, **** for a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
                 r"(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![\d+])(?:\+?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?!\d)")
_LANDLINE = re.compile(r"(?<![\d-])(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}[-\s])[1-9]\d{6,7}(?![\d-])")
_CARD = re.compile(r"(?<![\d-])[3-6]\d{3}(?:[-\s]?\d{4}){2}(?:[-\s]?\d{1,4}){1,2}(?![\d-])")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_URL_CRED = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:(?P<secret>[^\s@/]+)@")
_PASSWORD = re.compile(r"(?:密码|口令|password|passwd|pwd)\s*(?:是|为|[:：=])\s*"
                       r"(?P<secret>[A-Za-z0-9!@#$%^&*._+\-=/~]{4,})", re.IGNORECASE)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class PiiHit:
    kind: str
    start: int
    end: int
    text: str


def valid_id_card(s: str) -> bool:
    s = s.upper()
    if len(s) != 18 or not s[:17].isdigit():
        return False
    try:
        date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return _ID_CHECK[sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True)) % 11] == s[17]


def luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str) -> list[PiiHit]:
    """Every personal-data value in ``text``, in order, without overlaps (the first kind listed wins)."""
    if not text:
        return []
    found: list[PiiHit] = []
    for m in _ID.finditer(text):
        if valid_id_card(m.group(0)):
            found.append(PiiHit("id_card", m.start(), m.end(), m.group(0)))
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 16 <= len(digits) <= 19 and luhn(digits):
            found.append(PiiHit("bank_card", m.start(), m.end(), m.group(0)))
    for kind, rx in (("mobile", _MOBILE), ("landline", _LANDLINE), ("email", _EMAIL)):
        found += [PiiHit(kind, m.start(), m.end(), m.group(0)) for m in rx.finditer(text)]
    for rx in (_URL_CRED, _PASSWORD):
        found += [PiiHit("credential", m.start("secret"), m.end("secret"), m.group("secret"))
                  for m in rx.finditer(text)]
    found.sort(key=lambda h: (h.start, -h.end))
    out: list[PiiHit] = []
    for h in found:
        if not out or h.start >= out[-1].end:
            out.append(h)
    return out


def _mask_one(h: PiiHit) -> str:
    t = h.text
    if h.kind == "id_card":
        return t[:6] + "*" * 10 + t[-2:]
    if h.kind in ("mobile", "landline"):
        digits = [i for i, c in enumerate(t) if c.isdigit()]
        start = len(digits) - 11 if h.kind == "mobile" and len(digits) > 11 else 0  # after a +86 country code
        keep = set(digits[:start + 3] + digits[-4:]) if len(digits) > 7 else set(digits[-2:])
        return "".join(c if (not c.isdigit() or i in keep) else "*" for i, c in enumerate(t))
    if h.kind == "bank_card":
        return "****" + re.sub(r"\D", "", t)[-4:]
    if h.kind == "email":
        local, _, domain = t.partition("@")
        return f"{local[:1]}***@{domain}"
    return "****"


def mask_pii(text: str, hits: list[PiiHit] | None = None) -> str:
    """``text`` with every personal-data value masked (``hits`` from ``find_pii``, found if None)."""
    hits = find_pii(text) if hits is None else hits
    if not hits:
        return text
    parts, pos = [], 0
    for h in hits:
        parts += [text[pos:h.start], _mask_one(h)]
        pos = h.end
    parts.append(text[pos:])
    return "".join(parts)
