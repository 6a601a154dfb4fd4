"""The reader (#27), old vs new in one run: `docqa eval run` on held-out parts the reader never trained on.

Sets: the *test* parts of docqa's case/article split (finetune/reader/data.py ``part_of``) of CAIL2019 dev
(court judgments, with unanswerable and yes/no questions), CMRC 2018 trial and DRCD dev. For each set a KB
holds the passages of its test part, except every ``--holdout-every``-th case/article: questions about those
are asked of a KB that lacks their passage (the hard "the documents do not say" case, with similar
passages present), and count as unanswerable together with the questions annotators marked impossible.

Each set runs through the real pipeline twice on the same KB: ``old`` = the reader off (sentence quoting,
refusal by coverage + cosine against ``refusal_threshold``), ``new`` = the reader on (the default).
Reported: answer contains a gold span, false refusals, refusals of unanswerable questions, answerability
balanced accuracy, EM / F1 of the reader's short answer (refusals of answerable questions count as 0),
and the reliability of P(answer). ``--cost`` measures the reader's CPU-ms per answer by window count and
window length (process CPU time, median of repeats, one thread).

    python bench/reader.py [--max-questions 400] [--cost]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPORTS,
    Passage,
    bench_settings,
    build_kb,
    machine_line,
    md_table,
    percentiles,
    temp_home,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"cail": "cail2019_cjrc/dev_ground_truth.json", "cmrc": "cmrc2018/squad-style-data_cmrc2018_trial.json",
        "drcd": "drcd/DRCD_dev.json"}
METRICS = ["answer_contains", "false_refusal_rate", "refusal_accuracy", "answerability_balanced_accuracy",
           "short_em", "short_f1"]


def load_set(name: str, part: str, holdout_every: int, limit: int | None):
    """(passages for the KB, eval rows): the ``part`` of set ``name``; see the module docstring."""
    from finetune.reader.data import read_squad

    qs = read_squad(Path(SETS[name]) if Path(SETS[name]).is_absolute() else SHARED / SETS[name], part)
    groups = sorted({q.group for q in qs})
    held = set(groups[::holdout_every]) if holdout_every else set()
    passages, seen = [], {}
    for q in qs:
        if q.group in held or q.context in seen:
            continue
        seen[q.context] = f"{name}-{len(seen)}"
        passages.append(Passage(seen[q.context], q.group.split(":", 1)[1], q.context))
    rows = []
    for q in qs:
        unanswerable = q.kind == "none" or q.group in held
        answers = [t for _, t in q.answers] if q.kind == "span" else []
        rows.append({"id": q.qid, "question": q.question, "answers": [] if unanswerable else answers,
                     "unanswerable": unanswerable, "kind": "held-out" if q.group in held else q.kind})
    if limit and len(rows) > limit:
        step = len(rows) / limit
        rows = [rows[int(i * step)] for i in range(limit)]
    return passages, rows


def sets_ready(args, tag: str) -> bool:
    """False (and why, on stderr) without ../shared/data; adds the set 'laws' when ``args.laws`` names its file."""
    if not SHARED.is_dir():
        print(f"[{tag}] no data at {SHARED}: nothing to measure", file=sys.stderr)
        return False
    if args.laws:
        SETS["laws"] = str(args.laws.resolve())
        if "laws" not in args.sets.split(","):
            args.sets += ",laws"
    return True


def run_set(name: str, args) -> dict:
    from docqa.kb import KnowledgeBase
    from service.evaluation.dataset import load_eval_set
    from service.evaluation.runner import evaluate

    passages, rows = load_set(name, args.part, args.holdout_every, args.max_questions)
    out = args.work / name
    out.mkdir(parents=True, exist_ok=True)
    qa = out / "questions.jsonl"
    qa.write_text("".join(json.dumps({k: r[k] for k in ("id", "question", "answers", "unanswerable")},
                                     ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    settings = bench_settings()
    t0 = time.perf_counter()
    build_kb(passages, f"reader-{name}", settings, progress=False)
    kb = KnowledgeBase.open(f"reader-{name}", settings)
    res = {"passages": len(passages), "questions": len(rows), "build_s": time.perf_counter() - t0,
           "kinds": {k: sum(1 for r in rows if r["kind"] == k) for k in ("span", "yes", "no", "none", "held-out")}}
    on = kb.with_settings({"reader": True})  # opt-in in the product for now (docqa/settings/parts.py)
    if args.calibrate:  # the reader at each window budget (windows x tokens), the default last as "new"
        versions = [(_label(w, t, f), kb.with_settings(
            {"reader": True, "reader_windows": w, "reader_windows_first": f, "reader_window_tokens": t}))
            for w, t, f in args.budgets]
        versions.append(("new", on))
    else:
        versions = [("old", kb.with_settings({"reader": False})),
                    ("reader P", kb.with_settings({"reader": True, "reader_rank": False})), ("new", on)]
    for label, view in versions:
        t1 = time.process_time()
        r = evaluate(view, load_eval_set(qa), out / label, progress=False, run_id=f"bench-reader-{label}")
        res[label] = {**{m: r["metrics"].get(m) for m in METRICS}, "cpu_s": time.process_time() - t1,
                      "report": r["report"], "answered": r["metrics"]["outcomes"]["answered"]}
        rows_path = Path(r["report"]).with_name("rows.jsonl")
        res[label]["scores"] = [(rec["evidence_score"], not rec["unanswerable"]) for rec in map(
            json.loads, rows_path.read_text(encoding="utf-8").splitlines()) if rec.get("basis") == "reader"]
        print(f"[reader] {name} {label}: " + ", ".join(f"{m} {_f(res[label][m])}" for m in METRICS), flush=True)
    if args.cost:
        res["answer_cost"] = answer_cost(on, rows, args.cost_questions)
    return res


ANSWER_BUDGETS = (("4x192, one batch (before)", 4, 4, 192), ("4x128, one batch", 4, 4, 128),
                  ("4x128, 2 first (default)", 4, 2, 128), ("4x128, 1 first", 4, 1, 128),
                  ("2x128, one batch", 2, 2, 128))


def answer_cost(kb, rows: list[dict], n: int) -> dict:
    """CPU-ms of the reader per answer on real questions (``n`` of ``rows``, retrieval done first and not
    counted): ``read_answer`` as the pipeline calls it, at each of ANSWER_BUDGETS, interleaved per question
    so that all budgets see the same machine. One thread (the reader's own setting)."""
    from docqa.reader.runtime import load_reader
    from docqa.search import search
    from service.answering.reading import read_answer

    reader, s = load_reader(), kb.settings
    per = {label: [] for label, *_ in ANSWER_BUDGETS}
    asked = [r for r in rows if r["question"].strip()][:n]
    for r in asked:
        hits = search(kb, r["question"], s.answer_k)
        for label, limit, first, tokens in ANSWER_BUDGETS:
            t = time.process_time()
            read_answer(reader, r["question"], hits, limit, tokens, first=first, enough=s.reader_threshold)
            per[label].append((time.process_time() - t) * 1000)
    out = {}
    for label, ms in per.items():
        p = percentiles(ms, (50, 95))
        out[label] = (p[50], p[95])
        print(f"[reader] per answer, {label}: p50 {out[label][0]:.1f}, p95 {out[label][1]:.1f} CPU-ms", flush=True)
    return out


def cost(args) -> list[list]:
    """CPU-ms of one reading by windows and window length (the shipped reader, one thread)."""
    from docqa.reader.runtime import load_reader

    reader = load_reader()
    text = ("劳动合同期限三个月以上不满一年的，试用期不得超过一个月；"
            "劳动合同期限一年以上不满三年的，试用期不得超过二个月；"
            "三年以上固定期限和无固定期限的劳动合同，试用期不得超过六个月。") * 6
    q = "劳动合同期限一年以上不满三年的，试用期最长多久？"
    rows = []
    from docqa.reader.windows import windows

    for length in (128, 192):
        qi = reader.tokens.question(q)
        ids, offs = reader.tokens.passage(text)
        wins = windows(qi, ids, offs, max_length=length)
        for n in (1, 2, 3, 4):
            part = (wins * 4)[:n]
            reader.read(part)
            times = []
            for _ in range(args.repeats):
                t = time.process_time()
                reader.read(part)
                times.append((time.process_time() - t) * 1000)
            rows.append([length, n, f"{statistics.median(times):.1f}"])
            print(f"[reader] cost {length} tokens x {n}: {rows[-1][2]} CPU-ms", flush=True)
    return rows


def budgets_table(results: dict, args) -> str:
    """Quality per window budget (windows x tokens per window) at the default threshold."""
    rows = []
    for name, r in results.items():
        for label in [_label(*b) for b in args.budgets] + ["new"]:
            m = r[label]
            rows.append([name, label, *[_f(m[x]) for x in METRICS], f"{m['cpu_s']:.0f}"])
    return md_table(["set", "windows x tokens", *METRICS, "CPU-s"], rows)


def calibrate(results: dict) -> str:
    """The reader_threshold with the best balanced accuracy per set and over the sets (each set weighted
    equally: the mean of their balanced accuracies), on the part measured (run it on --part dev)."""
    from docqa.reader.metrics import balanced_accuracy

    grid = [i / 100 for i in range(5, 96)]
    per = {name: [balanced_accuracy([t for _, t in r["new"]["scores"]], [p >= th for p, _ in r["new"]["scores"]])
                  for th in grid] for name, r in results.items()}
    rows = []
    for name, bas in per.items():
        if all(b is None for b in bas):
            continue
        i = max(range(len(grid)), key=lambda j: (bas[j] or 0, -abs(grid[j] - 0.5)))
        rows.append([name, grid[i], _f(bas[i]), _f(bas[grid.index(0.5)])])
    usable = [b for b in per.values() if not all(x is None for x in b)]
    mean = [sum(b[j] or 0 for b in usable) / len(usable) for j in range(len(grid))] if usable else []
    if mean:
        i = max(range(len(grid)), key=lambda j: (mean[j], -abs(grid[j] - 0.5)))
        rows.append(["mean of the sets", grid[i], _f(mean[i]), _f(mean[grid.index(0.5)])])
        print(f"[reader] best reader_threshold over the sets: {grid[i]} (balanced accuracy {mean[i]:.3f})")
    return md_table(["set", "best reader_threshold", "balanced accuracy there", "at 0.5"], rows)


def _budget(v: str) -> tuple[int, int, int]:
    """'WxT' or 'WxT/F' -> (windows, tokens, windows read first)."""
    size, _, first = v.lower().partition("/")
    w, t = (int(x) for x in size.split("x"))
    return w, t, int(first) if first else w


def _label(windows: int, tokens: int, first: int) -> str:
    return f"{windows}x{tokens}" + (f", {first} first" if first != windows else "")


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def render(args, results: dict, cost_rows: list[list] | None) -> str:
    lines = [f"Measured by `python bench/reader.py {' '.join(sys.argv[1:])}` on {machine_line()}.", "",
             f"Held-out: the **{args.part}** part of each set (split by case/article; the shipped reader never "
             f"trained or tuned on it); every {args.holdout_every}th case/article of it is left out of the KB and its "
             "questions count as unanswerable. old = reader off (sentence quoting, coverage + cosine refusal: the "
             "default); reader P = `reader: true, reader_rank: false` (the window the reader's own P(answer) puts "
             "first answers, refusal on that P); new = `reader: true` (its other settings at their defaults: the "
             "window ranker of docqa/reader/rank.py decides the window and the refusal).", ""]
    header = ["set", "passages", "questions (span/yes/no/impossible/held-out)", "version", *METRICS, "CPU-s"]
    rows = []
    for name, r in results.items():
        k = r["kinds"]
        mix = f"{r['questions']} ({k['span']}/{k['yes']}/{k['no']}/{k['none']}/{k['held-out']})"
        for label in [v for v in ("old", "reader P", "new") if v in r]:
            m = r[label]
            rows.append([name, r["passages"], mix, label, *[_f(m[x]) for x in METRICS], f"{m['cpu_s']:.0f}"])
    lines += [md_table(header, rows), ""]
    lines += ["Each run's report (with the reliability diagram of P(answer) for the new version) is written under "
              f"`{args.work}`.", ""]
    per_answer = [[name, label, f"{p50:.1f}", f"{p95:.1f}"] for name, r in results.items()
                  for label, (p50, p95) in r.get("answer_cost", {}).items()]
    if per_answer:
        lines += ["## Cost per answer (the reader's `read_answer` on each set's questions, retrieval not counted; "
                  "CPU-ms, one thread, the budgets interleaved per question)", "",
                  md_table(["set", "windows x tokens", "p50", "p95"], per_answer), ""]
    if cost_rows:
        lines += ["## Cost of a reading (int8 ONNX, one thread, CPU-ms, median)", "",
                  md_table(["window tokens", "windows", "CPU-ms"], cost_rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="cail,cmrc,drcd")
    ap.add_argument("--part", default="test", choices=["test", "dev"])
    ap.add_argument("--holdout-every", type=int, default=5)
    ap.add_argument("--max-questions", type=int, default=600)
    ap.add_argument("--cost", action="store_true", help="also the reader's CPU-ms per window and per answer")
    ap.add_argument("--cost-questions", type=int, default=100, help="with --cost: questions per set timed")
    ap.add_argument("--calibrate", action="store_true", help="the new version only, then the best reader_threshold "
                    "(use with --part dev; report on --part test)")
    ap.add_argument("--budget", dest="budgets", action="append", default=[], metavar="WINDOWSxTOKENS[/FIRST]",
                    type=_budget, help="with --calibrate: also run the reader at this window budget, e.g. 2x192 "
                    "(one batch) or 4x128/1 (one window first, the rest when it does not answer); repeatable")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--work", type=Path, default=Path("/tmp/docqa-bench-reader"))
    ap.add_argument("--laws", type=Path, default=None, help="the statute questions file of `docqa finetune "
                    "statute-questions` (READER_MODEL.md says where its laws come from): adds the set 'laws'")
    ap.add_argument("--out", type=Path, default=REPORTS / "reader.md")
    args = ap.parse_args(argv)
    if not sets_ready(args, "reader"):
        return 2
    results = {}
    with temp_home("docqa-bench-reader-"):
        for name in args.sets.split(","):
            results[name] = run_set(name, args)
    if args.calibrate:
        table = calibrate(results)
        budgets = budgets_table(results, args)
        out = args.out.with_name("reader_calibration.md")
        out.write_text("# reader_threshold and the window budget on the dev parts\n\n" + f"Measured by `python "
                       f"bench/reader.py {' '.join(sys.argv[1:])}` on {machine_line()}.\n\n{table}\n\n"
                       f"## Window budgets (at the default reader_threshold)\n\nWxT: W windows of T tokens read in "
                       f"one batch; new: the defaults (reader_windows x reader_window_tokens, the first "
                       f"reader_windows_first of them read first, the rest only when those do not answer).\n\n"
                       f"{budgets}\n", encoding="utf-8")
        print(budgets)
        print(table)
        return 0
    cost_rows = cost(args) if args.cost else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# The reader: held-out answers, old vs new\n\n" + render(args, results, cost_rows),
                        encoding="utf-8")
    slim = {n: {k: ({kk: vv for kk, vv in v.items() if kk != "scores"} if isinstance(v, dict) else v)
                for k, v in r.items()} for n, r in results.items()}
    (args.out.with_suffix(".json")).write_text(json.dumps(slim, ensure_ascii=False, indent=2, default=str))
    print(f"[reader] report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
