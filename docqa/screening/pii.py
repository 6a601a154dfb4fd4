"""Personal data and credentials in text: found with validation, masked for display.

Kinds (each validated, so a long number is not a card or an ID just by its length):

- ``id_card``: Chinese resident ID (18 characters: region, a real birth date, sequence, and the
  ISO 7064 MOD 11-2 check character; or a first-generation 15-digit one), also written in groups with
  spaces, dashes or a line break between them, or in full-width digits;
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

# A resident ID as people write it: 18 characters (or a first-generation 15-digit one), in one run or
# with a space, dash or line break between groups ("110105 19491231 002X", "110105-1949..."), in
# full-width digits too (find_pii reads a half-width copy of the text).
_SEP = r"(?:[ \t\-\u3000]|\r?\n)"
_ID = re.compile(rf"(?<![0-9A-Za-z])[1-9](?:{_SEP}?\d){{14}}(?:(?:{_SEP}?\d){{2}}{_SEP}?[\dXx])?(?![0-9A-Za-z])")
_MAX_ID_SEPARATORS = 3
# the province-level region codes an ID starts with (GB/T 2260)
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51,
                        52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 91})
# full-width digits and X read as half-width (one character for one: offsets stay those of the text)
_HALF_WIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "Ｘ": "X", "ｘ": "x"})
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
    """A resident ID: 18 characters with a real birth date and the right check character, or a
    first-generation 15-digit one (no check character: region and a real 19YY birth date)."""
    s = s.upper()
    if len(s) == 15 and s.isdigit():
        born = (1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))
    elif len(s) == 18 and s[:17].isdigit():
        born = (int(s[6:10]), int(s[10:12]), int(s[12:14]))
    else:
        return False
    if int(s[:2]) not in _PROVINCES:
        return False
    try:
        date(*born)
    except ValueError:
        return False
    return len(s) == 15 or _ID_CHECK[sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=True)) % 11] == s[17]


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
    original, text = text, text.translate(_HALF_WIDTH)
    for m in _ID.finditer(text):
        compact = re.sub(r"\s|-|\u3000", "", m.group(0))
        if len(m.group(0)) - len(compact) <= _MAX_ID_SEPARATORS and valid_id_card(compact):
            found.append(PiiHit("id_card", m.start(), m.end(), original[m.start():m.end()]))
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 16 <= len(digits) <= 19 and luhn(digits):
            found.append(PiiHit("bank_card", m.start(), m.end(), original[m.start():m.end()]))
    for kind, rx in (("mobile", _MOBILE), ("landline", _LANDLINE), ("email", _EMAIL)):
        found += [PiiHit(kind, m.start(), m.end(), original[m.start():m.end()]) for m in rx.finditer(text)]
    for rx in (_URL_CRED, _PASSWORD):
        found += [PiiHit("credential", m.start("secret"), m.end("secret"), original[m.start("secret"):m.end("secret")])
                  for m in rx.finditer(text)]
    found.sort(key=lambda h: (h.start, -h.end))
    out: list[PiiHit] = []
    for h in found:
        if not out or h.start >= out[-1].end:
            out.append(h)
    return out


def _mask_one(h: PiiHit) -> str:
    t = h.text
    if h.kind == "id_card":  # the region and the last two characters stay; separators stay where they were
        chars = [i for i, c in enumerate(t) if c.isdigit() or c in "XxＸｘ"]
        keep = set(chars[:6] + chars[-2:])
        return "".join(c if (i in keep or i not in chars) else "*" for i, c in enumerate(t))
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
