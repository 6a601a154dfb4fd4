"""Chinese numerals <-> integers: the one implementation (statute labels, the compliance filter's facts).

``zh_numeral("一百零二") == 102``, ``zh_numeral("二〇一九") == 2019`` (digits in a row), ``zh_numeral("三千五百万")
== 35_000_000``; ``to_zh(102) == "一百零二"`` as statutes number their articles (十九, not 一十九).
"""

from __future__ import annotations

ZH_DIGITS = {"零": 0, "〇": 0, "○": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
             "八": 8, "九": 9}
ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
ZH_BIG = {"万": 10_000, "亿": 100_000_000}
ZH_NUM = "".join(ZH_DIGITS) + "".join(ZH_UNITS) + "".join(ZH_BIG)


def zh_numeral(text: str) -> int | None:
    """A Chinese numeral's value (Arabic digits are read too: "19" -> 19); None when ``text`` is not one."""
    if text.isascii() and text.isdigit():
        return int(text)
    if not text or any(ch not in ZH_NUM for ch in text):
        return None
    if not any(ch in ZH_UNITS or ch in ZH_BIG for ch in text):  # 二〇一九: digits in a row
        return int("".join(str(ZH_DIGITS[ch]) for ch in text))
    total = section = 0
    digit = None
    for ch in text:
        if ch in ZH_DIGITS:
            digit = ZH_DIGITS[ch]
        elif ch in ZH_UNITS:
            section += (1 if digit is None else digit) * ZH_UNITS[ch]
            digit = None
        else:  # 万 / 亿
            section += digit or 0
            total = (total + section) * ZH_BIG[ch] if ch == "亿" else total + section * ZH_BIG[ch]
            section, digit = 0, None
    return total + section + (digit or 0)


def to_zh(n: int) -> str:
    """102 -> "一百零二", 19 -> "十九", 10 -> "十", 110 -> "一百一十" (up to 9,999)."""
    if n <= 0:
        return "零"
    digits = "零一二三四五六七八九"
    parts: list[str] = []
    zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = (n // value) % 10
        if d == 0:
            zero = bool(parts)
            continue
        if zero:
            parts.append("零")
            zero = False
        parts.append(("" if (unit == "十" and d == 1 and not parts) else digits[d]) + unit)
    return "".join(parts)
