"""Tables: is the right row among the top 5 passages? Before vs after tables as Markdown blocks (#10).

Questions are built from the rows of the data tables docqa finds in the real documents of
../shared/data/documents_zh (the PDF manuals' ruled tables and the DOCX standards' tables): for a row,
the cell that names it (the first cell unique in its column) and another column's value give "{name}的
{column}是什么？" (e.g. "TCP_RETRY_PERIOD的位定义是什么？"), the value being the answer. Values shorter than
two characters ("×", "-") make no question: the DOCX standards' one table, a 14x14 matrix of "×" marks,
yields none, so the figures are about the PDF manuals' tables. The set is written to
bench/data/table_questions.jsonl (bench data) and reused when present.

recall@5 of the right row: one of the 5 passages ``docqa search`` returns (hybrid, default settings) has
a line holding both the row's name cell and the asked value (a row is one line in both versions: a
"a | b | c" paragraph before, a Markdown table line after). Answer accuracy: the extractive answer
contains the value. The old version runs from a git worktree of --before.

    python bench/tables.py [--before fce00e6] [--max-per-table 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from common import REPO, add_before_after_args, before_and_after, ensure_questions, run_one_child

DOCS = REPO.parent / "shared" / "data" / "documents_zh"
QUESTIONS = REPO / "bench" / "data" / "table_questions.jsonl"


def sources() -> list[Path]:
    return sorted((DOCS / "pdf").glob("*.pdf")) + sorted((DOCS / "docx").glob("*.docx"))


def build_questions(max_per_table: int, seed: int = 0) -> list[dict]:
    sys.path.insert(0, str(REPO))
    from docqa.document import BlockKind
    from docqa.text.tables import cells
    from ingest.loaders import load_file

    rng = random.Random(seed)
    out = []
    for path in sources():
        for block in load_file(path)[0].blocks:
            if block.kind != BlockKind.TABLE:
                continue
            lines = block.text.split("\n")
            header, rows = cells(lines[0]), [cells(x) for x in lines[2:]]
            made = []
            for row in rows:
                key_col = next((j for j, c in enumerate(row) if len(c) >= 2 and sum(r[j] == c for r in rows) == 1),
                               None)
                if key_col is None:
                    continue
                asks = [j for j, c in enumerate(row) if j != key_col and len(c) >= 2 and header[j]
                        and c not in row[key_col] and header[j] != c]
                if asks:
                    j = rng.choice(asks)
                    made.append({"source": path.name, "question": f"{row[key_col]}的{header[j]}是什么？",
                                 "name": row[key_col], "value": row[j]})
            rng.shuffle(made)
            out += made[:max_per_table]
    return out


def run_one(code: Path, questions: list[dict], home: Path) -> list[dict]:
    sys.path.insert(0, str(code))
    os.environ["HF_HUB_OFFLINE"] = "1"
    from docqa.kb import KnowledgeBase
    from docqa.search import search
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths
    from service.answering import answer_question

    settings = load_settings(home=home, device="cpu")
    ingest_paths(sources(), "docs", settings, progress=False)
    kb = KnowledgeBase.open("docs", settings)
    rows = []
    for q in questions:
        hits = search(kb, q["question"], 5)
        rank = next((i + 1 for i, h in enumerate(hits) if any(q["name"] in line and q["value"] in line
                                                                for line in h.text.split("\n"))), None)
        r = answer_question(kb, q["question"])
        rows.append({**q, "rank": rank, "answered": q["value"] in r.answer, "refused": r.refused})
    kb.close()
    return rows


def summarize(rows: list[dict]) -> dict:
    n = max(len(rows), 1)
    return {"questions": len(rows), "recall@1": sum(r["rank"] == 1 for r in rows) / n,
            "recall@5": sum(r["rank"] is not None for r in rows) / n,
            "answer_has_value": sum(r["answered"] for r in rows) / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-per-table", type=int, default=8)
    add_before_after_args(ap, "fce00e6")
    args = ap.parse_args()
    if run_one_child(args, QUESTIONS, run_one):
        return
    print(f"{ensure_questions(QUESTIONS, lambda: build_questions(args.max_per_table))} questions in {QUESTIONS}")
    results = before_and_after(__file__, args.before)
    s = {k: summarize(v) for k, v in results.items()}
    lines = ["# Tables: the right row in the top 5 (bench/tables.py)", "",
             f"{s['after']['questions']} questions from table rows of the real PDF manuals and DOCX standards "
             "(bench/data/table_questions.jsonl; how they are built: the script's docstring). Hybrid search and the "
             f"extractive answerer, default settings. before = {args.before} (a table row = a paragraph of "
             "' | '-joined cells, packed with prose); after = Markdown table blocks cut by rows, header repeated.",
             "", "| | before | after |", "|---|---|---|"]
    for key in ("recall@1", "recall@5", "answer_has_value"):
        lines.append(f"| {key} | {s['before'][key]:.1%} | {s['after'][key]:.1%} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tables.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "tables.json").write_text(json.dumps({"summary": s, "rows": results}, ensure_ascii=False, indent=1),
                                          encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
