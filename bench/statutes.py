"""Statutes: does the first citation point at the right article? Before vs after statute structure (#10).

Questions (60 by default, 15 per law) are built from the article text of the four Markdown statutes in
../shared/data/documents_zh/md, the way `docqa eval make` builds them without an LLM: one sentence of
one article, with a fact in it (a duration, an amount, else a keyphrase) turned into its question word
("劳动合同期限一年以上不满三年的，试用期不得超过多少个月？"). Sentences that name an article ("依照本法
第三十九条") are skipped, so no question is found by the exact article lookup: this measures the
chunking and citation, not the lookup. The set is written to bench/data/statute_questions.jsonl (bench
data, not product code) and reused when present.

Each version ingests the four laws into a fresh KB with its default settings and answers every question
with the extractive answerer; "right" = the first citation's passage opens with the article the question
was made from (the label a reader sees first); "contains" = that article's text is in the passage at all.
The old version runs from a git worktree of --before (default: the commit before statute structure).

    python bench/statutes.py [--before fce00e6] [--n-per-law 15]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from pathlib import Path

from common import REPO, add_before_after_args, before_and_after, ensure_questions, run_one_child

LAWS = ["劳动合同法(2012-12-28).md", "消费者权益保护法(2013-10-25).md", "公司法(2023-12-29).md",
        "社会保险法(2018-12-29).md"]
DATA = REPO.parent / "shared" / "data" / "documents_zh" / "md"
QUESTIONS = REPO / "bench" / "data" / "statute_questions.jsonl"
_ARTICLE = re.compile(r"^第([零〇一二三四五六七八九十百千两\d]{1,8})条(?!之)")


def build_questions(n_per_law: int, seed: int = 0) -> list[dict]:
    sys.path.insert(0, str(REPO))
    from docqa.labels import cn_to_int
    from docqa.text.sentences import split_sentences
    from ingest.keyinfo import candidates
    from ingest.loaders import load_file
    from ingest.structure import annotate
    from service.evaluation.make import _FACT, fact_span, rule_question

    rng = random.Random(seed)
    out = []
    for law in LAWS:
        doc = load_file(DATA / law)[0]
        annotate(doc.blocks)
        articles: dict[str, list[str]] = {}
        for b in doc.blocks:
            if b.article.startswith("第") and "之" not in b.article:
                articles.setdefault(b.article, []).append(re.sub(r"^第\S+条\s*", "", b.text))
        keys = list(articles)
        rng.shuffle(keys)
        made = 0
        for key in keys:
            sents = [s for t in articles[key] for s in split_sentences(t)
                     if 12 <= len(s) <= 160 and not re.search(r"第\S{1,6}条", s) and not s.startswith(("（", "("))]
            rng.shuffle(sents)
            for s in sents:
                span = fact_span(s, [w for w, _ in candidates(s)])
                # a keyphrase blanked after a short head leaves a question any article could answer
                # ("用人单位与劳动者什么？"): keep those only with 16 characters of context before the blank
                if span and s.count(span) == 1 and (_FACT.search(span) or s.index(span) >= 16):
                    out.append({"law": law, "title": doc.title, "article": cn_to_int(key[1:-1]), "label": key,
                                "question": rule_question(s, span), "answer": span, "sentence": s})
                    made += 1
                    break
            if made >= n_per_law:
                break
    return out


def run_one(code: Path, questions: list[dict], home: Path) -> list[dict]:
    """Ingest the laws with the code in ``code`` and answer every question (runs in a child process)."""
    sys.path.insert(0, str(code))
    os.environ["HF_HUB_OFFLINE"] = "1"
    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths
    from service.answering import answer_question
    from service.answering.pipeline import prepare

    settings = load_settings(home=home, device="cpu")
    report = ingest_paths([DATA / law for law in LAWS], "laws", settings, progress=False)
    assert not report.failures, report.failures
    kb = KnowledgeBase.open("laws", settings)
    rows = []
    for q in questions:
        r = answer_question(kb, q["question"])
        prep = prepare(kb, q["question"])
        best = prep.hits[prep.chosen[0].hit_index] if prep.chosen else None
        bm = _ARTICLE.match(best.text) if best else None
        best_right = bool(bm) and Path(best.source).name == q["law"] and _to_int(bm.group(1)) == q["article"]
        top = prep.hits[0] if prep.hits else None
        tm = _ARTICLE.match(top.text) if top else None
        top_right = bool(tm) and Path(top.source).name == q["law"] and _to_int(tm.group(1)) == q["article"]
        first = r.citations[0] if r.citations else None
        m = _ARTICLE.match(first["text"]) if first else None
        from_law = bool(first) and Path(first["source"]).name == q["law"]
        opens = bool(m) and from_law and _to_int(m.group(1)) == q["article"]
        contains = bool(first) and from_law and bool(re.search(rf"(^|\n){q['label']}[\s　]", first["text"]))
        rows.append({"question": q["question"], "article": q["label"], "refused": r.refused, "right": opens,
                     "best_right": best_right, "top_right": top_right,
                     "contains": contains, "label": (first or {}).get("label", ""),
                     "passage_articles": len(re.findall(r"(?:^|\n)第\S{1,8}条[\s　]", first["text"])) if first else 0})
    kb.close()
    return rows


def _to_int(s: str) -> int | None:
    from docqa.labels import cn_to_int

    return cn_to_int(s)


def summarize(rows: list[dict]) -> dict:
    n = len(rows)
    return {"questions": n, "first_citation_right_article": sum(r["right"] for r in rows) / n,
            "best_quote_right_article": sum(r["best_right"] for r in rows) / n,
            "first_citation_contains_article": sum(r["contains"] for r in rows) / n,
            "refused": sum(r["refused"] for r in rows) / n,
            "refused_with_article_first": sum(r["refused"] for r in rows if r.get("top_right"))
            / max(1, sum(1 for r in rows if r.get("top_right"))),
            "articles_per_cited_passage": sum(r["passage_articles"] for r in rows) / max(n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-per-law", type=int, default=15)
    add_before_after_args(ap, "fce00e6")
    ap.add_argument("--versions", default="before = {before} (articles packed into length chunks), after = statute "
                    "structure (one article per unit, pinpoint labels)", help="what the two versions are (report text)")
    args = ap.parse_args()
    if run_one_child(args, QUESTIONS, run_one):
        return
    print(f"{ensure_questions(QUESTIONS, lambda: build_questions(args.n_per_law))} questions in {QUESTIONS}")
    write_report(before_and_after(__file__, args.before), args)


def write_report(results: dict, args) -> None:
    s = {k: summarize(v) for k, v in results.items()}
    lines = ["# Statutes: the first citation's article (bench/statutes.py)", "",
             f"{s['after']['questions']} questions from the article text of the four Markdown statutes "
             "(bench/data/statute_questions.jsonl; how they are built: the script's docstring). Extractive "
             f"answerer, default settings. {args.versions.format(before=args.before)}.", "",
             "| | before | after |", "|---|---|---|"]
    for key, name in (("first_citation_right_article", "first citation [1] opens with the right article"),
                      ("best_quote_right_article", "the best-supported quote's passage opens with it"),
                      ("first_citation_contains_article", "first citation contains the right article"),
                      ("articles_per_cited_passage", "articles in the cited passage (mean)"),
                      ("refused", "refused"),
                      ("refused_with_article_first", "refused although the right article ranked first")):
        fmt = "{:.2f}" if key == "articles_per_cited_passage" else "{:.1%}"
        lines.append(f"| {name} | {fmt.format(s['before'][key])} | {fmt.format(s['after'][key])} |")
    wrong = [r for r in results["after"] if not r["right"]]
    if wrong:
        lines += ["", "Questions the new version still cites wrongly:", ""]
        lines += [f"- {r['question']} (want {r['article']}, got "
                  f"{r['label'] or ('a refusal' if r['refused'] else 'a passage outside any article')})" for r in wrong]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "statutes.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "statutes.json").write_text(json.dumps({"summary": s, "rows": results}, ensure_ascii=False,
                                                       indent=1), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
