"""docqa gates itself with ``docqa eval run`` (issue #13): eval sets built from ../shared/data and the
sample statutes, each run against its stored baseline in bench/baselines/.

Sets (each in its own KB, built with the product defaults):

- ``cmrc``: CMRC 2018 trial, the first 300 answerable questions, gold = their passage;
- ``drcd``: DRCD dev (traditional Chinese), the first 300;
- ``cail``: CAIL2019 dev, the first 120 cases' questions, with their unanswerable ones (is_impossible)
  and questions about cases held out of the KB (every 4th pair of cases): refusal is measured here;
- ``statutes``: `docqa eval make` on the statutes of examples/docs (劳动合同法, 消费者权益保护法,
  社会保险法), unanswerable questions from the one held out (个人所得税法实施条例).

The command is the one users run (``docqa eval run --baseline ... --tolerance ...``), in this process.
Exit status 3 when any set regressed beyond the tolerance; ``--update`` rewrites the baselines
(after a deliberate change, with the reason in the commit message).

    python bench/eval_gate.py [--sets cmrc,drcd,cail,statutes] [--tolerance 0.02] [--update]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    REPORTS,
    Dataset,
    bench_settings,
    build_kb,
    load_squad,
    md_table,
    write_report,
)

BASELINES = REPO / "bench" / "baselines"
DOCS = REPO / "examples" / "docs"
STATUTES = ["劳动合同法(2012-12-28).md", "消费者权益保护法(2013-10-25).md", "社会保险法(2018-12-29).md"]
STATUTE_HOLDOUT = "gov.cn_content_5351177_中华人民共和国个人所得税法实施条例.html"
SETS = ("cmrc", "drcd", "cail", "statutes")


def _squad_set(ds: Dataset, n: int, folder: Path, settings) -> Path:
    passages, questions = load_squad(ds, n)
    build_kb(passages, ds.value, settings, progress=False)
    path = folder / f"{ds.value}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps({"id": q.qid, "question": q.text, "answers": q.answers, "doc_ids": [q.gold]},
                               ensure_ascii=False) + "\n")
    return path


def _cail_set(n_cases: int, folder: Path, settings) -> Path:
    from bench.common import Passage, iter_cail_cases

    passages, rows = [], []
    for case, name, text, qas in iter_cail_cases(n_cases):
        held = (case // 2) % 4 == 3  # as bench/calibrate_refusal.py holds cases out
        if not held:
            passages.append(Passage(f"case-{case}", name, text))
        for qa in qas:
            spans = sorted({a.get("text", "") for a in qa.get("answers", [])} - {"", "YES", "NO"})
            impossible = qa.get("is_impossible") in ("true", True)
            if impossible and spans:
                continue
            if held or impossible:
                rows.append({"id": qa["id"], "question": qa["question"].strip(), "unanswerable": True})
            elif spans:
                rows.append({"id": qa["id"], "question": qa["question"].strip(), "answers": spans,
                             "doc_ids": [f"case-{case}"]})
    build_kb(passages, "cail", settings, progress=False)
    path = folder / "cail.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _statute_set(folder: Path, settings) -> Path:
    from docqa.kb import KnowledgeBase
    from ingest.pipeline import ingest_paths
    from service.evaluation.dataset import write_eval_set
    from service.evaluation.make import make_eval_set

    ingest_paths([DOCS / s for s in STATUTES], "statutes", settings, progress=False)
    rows, _ = make_eval_set(KnowledgeBase.open("statutes", settings), 120, holdout=[DOCS / STATUTE_HOLDOUT],
                            unanswerable_share=0.3, seed=0)
    return write_eval_set(rows, folder / "statutes.jsonl")


def build_sets(names: list[str], folder: Path, settings) -> dict[str, Path]:
    makers = {"cmrc": lambda: _squad_set(Dataset.CMRC, 300, folder, settings),
              "drcd": lambda: _squad_set(Dataset.DRCD, 300, folder, settings),
              "cail": lambda: _cail_set(120, folder, settings), "statutes": lambda: _statute_set(folder, settings)}
    out = {}
    for n in names:
        t0 = time.perf_counter()
        out[n] = makers[n]()
        print(f"[eval-gate] built {n} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--update", action="store_true", help="rewrite bench/baselines/ from this run")
    ap.add_argument("--baselines", type=Path, default=BASELINES)
    ap.add_argument("--out", type=Path, default=REPORTS / "eval_gate.md")
    args = ap.parse_args(argv)
    names = [s for s in args.sets.split(",") if s]
    from docqa.kb import KnowledgeBase
    from service.evaluation.dataset import load_eval_set
    from service.evaluation.report import metric_table
    from service.evaluation.runner import evaluate

    rows, sections, failed = [], [], []
    with tempfile.TemporaryDirectory(prefix="docqa-eval-gate-") as tmp:
        settings = bench_settings(home=Path(tmp) / "home")
        sets = build_sets(names, Path(tmp), settings)
        for name, path in sets.items():
            base_path = args.baselines / f"{name}.json"
            baseline = json.loads(base_path.read_text(encoding="utf-8")) if base_path.is_file() and not args.update \
                else None
            t0 = time.perf_counter()
            result = evaluate(KnowledgeBase.open(name, settings), load_eval_set(path), Path(tmp) / f"out-{name}",
                              baseline=baseline, tolerance=args.tolerance, progress=False, run_id=f"gate:{name}")
            seconds = time.perf_counter() - t0
            m = result["metrics"]
            if args.update:
                args.baselines.mkdir(parents=True, exist_ok=True)
                keep = {k: v for k, v in m.items() if not isinstance(v, dict)}
                base_path.write_text(json.dumps(keep, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            if result["regressions"]:
                failed.append(f"{name}: {', '.join(result['regressions'])}")
            rows.append([name, m["questions"], m["hit@5"], m["mrr@10"], m["answer_contains"], m["citation_precision"],
                         m["refusal_accuracy"], m["false_refusal_rate"], round(seconds / m["questions"] * 100, 1),
                         "regressed" if result["regressions"] else ("baseline written" if args.update else "ok")])
            sections.append(f"### {name}\n\n{metric_table(m, baseline)}")
    table = md_table(["set", "questions", "hit@5", "mrr@10", "answer contains", "citation precision",
                      "refusal accuracy", "false refusals", "s / 100 q", "gate"],
                     [[("–" if v is None else v) for v in r] for r in rows])
    body = (f"`python bench/eval_gate.py` (tolerance {args.tolerance}): `docqa eval run` on each set against "
            f"bench/baselines/<set>.json; exit status 3 on a regression.\n\n{table}\n\n"
            + ("**Regressions:** " + "; ".join(failed) if failed else "No set regressed.") + "\n\n"
            + "\n\n".join(sections))
    write_report(args.out, "Eval gate: docqa eval run against stored baselines", body)
    print(table)
    if failed:
        print("regressions: " + "; ".join(failed), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
