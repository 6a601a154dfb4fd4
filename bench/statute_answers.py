"""Statute answers, sentence quoting (old) vs the reader (new), in one run: the right article first, no refusal of
a question whose article ranked first, and absent laws refused (#27).

Two question sets, each over its own KB built with the default settings:

- **user**: bench/data/statute_user_questions.jsonl, questions in a user's words ("还在试用期，想走人的话得提前
  几天告诉单位？") about the statutes of examples/docs (the KB `make quickstart` builds: three laws, a tax
  regulation, a holiday notice, an English handbook), each with the article that answers it and the short
  answers that count; six of them ask what no document there says (company law, divorce, tenancy...) and
  must be refused. Written for this bench from the statute text; in the repository, so it runs without
  ../shared.
- **user-dev** (with ``--laws DIR``): bench/data/statute_user_questions_dev.jsonl, written the same way over six
  statutes of the `@dev` part of the reader's statute split (保险法, 电子商务法, 食品安全法, 专利法, 农村土地承包法,
  法律援助法; DIR is LawRefBook/Laws' files, docqa/reader/READER_MODEL.md), ten of them to refuse (labour
  contracts, driving licences, divorce...: no law of that KB says). What reader settings are tuned on; **user**
  is what they are reported on.
- **rule**: bench/data/statute_questions.jsonl (bench/statutes.py: a clause of an article with its fact turned
  into a question word) over the four Markdown statutes of ../shared/data/documents_zh/md; skipped, with the
  reason, when that folder is missing.

"right article first" = the first citation's passage opens with the article (label) the question was made from;
"article ranked first" = the top retrieved passage does (retrieval put it first, whatever the answerer did).

    python bench/statute_answers.py [--out bench/reports/statute_answers.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, REPORTS, machine_line, md_table, temp_home  # noqa: E402

USER_QUESTIONS = REPO / "bench" / "data" / "statute_user_questions.jsonl"
DEV_QUESTIONS = REPO / "bench" / "data" / "statute_user_questions_dev.jsonl"
RULE_QUESTIONS = REPO / "bench" / "data" / "statute_questions.jsonl"
EXAMPLES = REPO / "examples" / "docs"
SHARED_LAWS = REPO.parent / "shared" / "data" / "documents_zh" / "md"
LAWS = ["劳动合同法(2012-12-28).md", "消费者权益保护法(2013-10-25).md", "公司法(2023-12-29).md",
        "社会保险法(2018-12-29).md"]
_ARTICLE = re.compile(r"^第([零〇一二三四五六七八九十百千两\d]{1,8})条(?!之)")
VERSIONS = (("old", {"reader": False}), ("new", {"reader": True}))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_sets(laws: Path | None = None, only: set[str] | None = None) -> dict[str, tuple[list[Path], list[dict]]]:
    """name -> (files to ingest, questions); the rule set only when ../shared holds its statutes, user-dev only
    with ``laws`` (the folder of LawRefBook statutes)."""
    sets = {"user": (sorted(EXAMPLES.iterdir()), read_jsonl(USER_QUESTIONS))}
    if laws is not None:
        dev = read_jsonl(DEV_QUESTIONS)
        files = sorted({laws / q["law"] for q in dev if q["law"]})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise SystemExit(f"--laws {laws}: missing {', '.join(missing)} (LawRefBook/Laws, see the docstring)")
        sets["user-dev"] = (files, dev)
    if all((SHARED_LAWS / law).is_file() for law in LAWS):
        rule = read_jsonl(RULE_QUESTIONS)
        sets["rule"] = ([SHARED_LAWS / law for law in LAWS],
                        [{"law": q["law"], "label": q["label"], "question": q["question"], "answers": [q["answer"]],
                          "unanswerable": False} for q in rule])
    else:
        print(f"[statute_answers] no statutes at {SHARED_LAWS}: the rule set is skipped", file=sys.stderr)
    return {k: v for k, v in sets.items() if not only or k in only}


def opens_with(passage: dict | None, q: dict) -> bool:
    """Whether a passage (a citation or a hit, as a dict with text and source) opens with the question's article."""
    if not passage or not q["law"]:
        return False
    m = _ARTICLE.match(passage["text"])
    return bool(m) and Path(passage["source"]).name == q["law"] and m.group(0) == q["label"]


def run_set(files: list[Path], questions: list[dict], name: str) -> dict[str, list[dict]]:
    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths
    from service.answering import answer_question
    from service.answering.pipeline import prepare
    from service.evaluation.metrics import contains_any

    settings = load_settings(device="cpu")
    report = ingest_paths(files, f"statutes-{name}", settings, progress=False)
    if report.failures:
        raise SystemExit(f"ingest failed: {report.failures}")
    kb = KnowledgeBase.open(f"statutes-{name}", settings)
    out: dict[str, list[dict]] = {}
    for label, over in VERSIONS:
        view = kb.with_settings(over)
        rows = []
        t0 = time.process_time()
        for q in questions:
            gold = q["answers"]
            r = answer_question(view, q["question"])
            top = prepare(view, q["question"]).hits[:1]
            first = r.citations[0] if r.citations else None
            rows.append({"question": q["question"], "article": q["label"], "unanswerable": q["unanswerable"],
                         "refused": r.refused, "answer": r.answer, "basis": r.basis,
                         "cited": (first or {}).get("label", ""),
                         "right": opens_with(first, q),
                         "top_right": bool(top) and opens_with({"text": top[0].text, "source": top[0].source}, q),
                         "contains": (not r.refused and contains_any(r.answer, gold)) if gold else None})
        out[label] = rows
        print(f"[statute_answers] {name} {label}: {len(rows)} questions, {time.process_time() - t0:.1f} CPU-s",
              flush=True)
    kb.close()
    return out


def summarize(rows: list[dict]) -> dict:
    ans = [r for r in rows if not r["unanswerable"]]
    una = [r for r in rows if r["unanswerable"]]
    first = [r for r in ans if r["top_right"]]
    spans = [r for r in ans if r["contains"] is not None]

    def share(xs, key):
        return sum(bool(x[key]) for x in xs) / len(xs) if xs else None

    return {"answerable": len(ans), "unanswerable": len(una), "right_first": share(ans, "right"),
            "contains": share(spans, "contains"), "refused": share(ans, "refused"),
            "article_ranked_first": len(first), "refused_article_first": sum(r["refused"] for r in first),
            "unanswerable_refused": share(una, "refused")}


def render(results: dict[str, dict[str, list[dict]]], command: str) -> str:
    def f(v):
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    rows = []
    for name, versions in results.items():
        for label, rs in versions.items():
            s = summarize(rs)
            rows.append([name, label, f"{s['answerable']} / {s['unanswerable']}", f(s["right_first"]),
                         f(s["contains"]), f(s["refused"]),
                         f"{s['refused_article_first']} of {s['article_ranked_first']}", f(s["unanswerable_refused"])])
    lines = ["# Statute answers: sentence quoting (old) vs the reader (new)", "",
             f"Measured by `{command}` on {machine_line()}. Each set's KB is built once with "
             "the default settings; old = `reader: false` (the default: sentence quoting, coverage + cosine "
             "refusal), new = `reader: true`. Sets and measures: the script's docstring.", "",
             md_table(["set", "version", "questions (answerable / to refuse)", "right article cited first",
                       "answer contains gold", "answerable refused", "refused although the article ranked first",
                       "unanswerable refused"], rows), ""]
    for name, versions in results.items():
        miss = [r for r in versions["new"] if (r["unanswerable"] != r["refused"]) or
                (not r["unanswerable"] and (not r["right"] or r["contains"] is False))]
        if miss:
            lines += [f"What new got wrong on {name}:", ""]
            lines += [f"- {r['question']} (want {r['article'] or 'a refusal'}; got "
                      f"{'a refusal' if r['refused'] else (r['cited'] or 'no citation')}): "
                      f"{r['answer'][:90].replace(chr(10), ' ')}" for r in miss]
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPORTS / "statute_answers.md")
    ap.add_argument("--laws", type=Path, help="LawRefBook/Laws statutes (a folder): adds the user-dev set")
    ap.add_argument("--sets", help="comma-separated subset of user,user-dev,rule")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {}
    with temp_home("docqa-statutes-"):
        for name, (files, questions) in load_sets(args.laws, set(args.sets.split(",")) if args.sets else None).items():
            results[name] = run_set(files, questions, name)
    text = render(results, "python bench/statute_answers.py " + " ".join(sys.argv[1:] if argv is None else argv))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
