"""Statute questions for `docqa finetune reader`: Markdown statutes (one "第X条" per article, as LawRefBook/Laws
writes them) -> a SQuAD-style file: each article sentence that holds a fact (a duration, an amount, a count)
becomes `docqa eval make`'s rule question about it ("……应当自收到征求意见函之日起多少日内？"), the fact its
gold span and the article its context; at most ``per_article`` questions per article, grouped by law (the
split keeps a law whole on one side)."""

from __future__ import annotations

import json
import re
from pathlib import Path

_ARTICLE = re.compile(r"^(?:\*\*)?第[零〇一二三四五六七八九十百千两\d]{1,8}条(?:\*\*)?\s*")


def articles(text: str) -> list[str]:
    """The articles of a Markdown statute, each with its following paragraphs (headings and comments out)."""
    out: list[list[str]] = []
    for line in text.split("\n"):
        s = line.strip()
        if not s or s.startswith(("#", "<!--")):
            continue
        if _ARTICLE.match(s):
            out.append([s])
        elif out:
            out[-1].append(s)
    return ["\n".join(a).replace("**", "") for a in out]


def statute_questions(paths: list[Path], per_article: int = 2) -> dict:
    """The SQuAD-style data of the statutes at ``paths`` (files, or folders of .md files)."""
    from docqa.text.sentences import split_sentences
    from service.evaluation.make import fact_span, rule_question

    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.glob("*.md")))
    data = []
    for f in files:
        law, paras = f.stem, []
        for ctx in articles(f.read_text(encoding="utf-8", errors="replace")):
            first, *rest = ctx.split("\n")
            qas = []
            for s in split_sentences(_ARTICLE.sub("", first) + "\n" + "\n".join(rest)):
                span = fact_span(s, []) if 12 <= len(s) <= 160 else None
                if not span or s.count(span) != 1:
                    continue
                at = ctx.find(s)
                start = ctx.find(span, max(at, 0))
                if at < 0 or start < 0:
                    continue
                qas.append({"id": f"{law}-{len(paras)}-{len(qas)}", "question": rule_question(s, span),
                            "answers": [{"text": span, "answer_start": start}], "is_impossible": "false"})
            if qas:
                paras.append({"context": ctx, "qas": qas[:per_article]})
        if paras:
            data.append({"id": law, "title": law, "paragraphs": paras})
    return {"version": "docqa-statute-questions-1", "data": data}


def write(paths: list[Path], out: Path, per_article: int = 2) -> tuple[int, int]:
    """Write the file; (laws, questions)."""
    d = statute_questions(paths, per_article)
    out.write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8")
    return len(d["data"]), sum(len(p["qas"]) for law in d["data"] for p in law["paragraphs"])
