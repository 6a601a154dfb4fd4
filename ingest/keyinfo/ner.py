"""Named entities (people, places, organisations) as extra key info, via jiagu (optional).

jiagu ships its Chinese NER model inside the PyPI package (~50 MB, no download at run time), so it
is an optional extra: ``pip install 'docqa[ner]'`` and ``ner: true``. Its tagger is character-based
BIO; entities are the B-/I- runs. Off by default: the tagger is slow and noisy on long text, and
the keyphrases usually carry the names already.
"""

from __future__ import annotations

from docqa.errors import Unavailable


class NERUnavailable(Unavailable):
    pass


def entities(text: str, limit: int = 8) -> list[str]:
    """Distinct entities of ``text`` in order of appearance (Chinese; other text gives none)."""
    try:
        import jiagu
    except ImportError:
        raise NERUnavailable("ner=true needs the optional NER model: pip install 'docqa[ner]' (jiagu)") from None
    chars = list(text[:512])  # bound the tagger's time on long segments
    tags = jiagu.ner(chars) if chars else []
    out: list[str] = []
    cur = ""
    for ch, tag in zip(chars, tags, strict=False):
        if tag.startswith("B-"):
            cur = ch
        elif tag.startswith("I-") and cur:
            cur += ch
        else:
            _flush(cur, out)
            cur = ""
    _flush(cur, out)
    return out[:limit]


def _flush(ent: str, out: list[str]) -> None:
    if len(ent) >= 2 and ent not in out:
        out.append(ent)
