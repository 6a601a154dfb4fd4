"""Calibrate ``Settings.refusal_threshold`` on CAIL2019 (court judgments, reading comprehension).

How the threshold is chosen (the figures are in bench/reports/refusal.md and next to the default):

1. Cases (one judgment passage each) are split in two halves by position: even cases calibrate,
   odd cases report. Every ``--holdout-every``-th pair of cases is held out of the KB.
2. One KB holds every other case's passage (real ingestion, default settings). Each question is
   answered by the real pipeline (``service.answering.pipeline.prepare``: search, then the support
   score of the best evidence sentence) with the threshold at 0, which records its best score.
3. Labels: *answer* = answerable (a span, or a YES/NO question) and its passage is in the KB;
   *refuse* = marked impossible with no answer by every annotator, or any question whose passage
   was held out (the KB does not say, though similar cases may be there: the hard case).
   Questions marked impossible that some annotator still answered are ambiguous and left out.
4. The threshold is the score that maximises balanced accuracy (mean of the answer rate on
   *answer* questions and the refusal rate on *refuse* ones) on the calibration half; the table
   reports it on the other half too, and the curve around it shows how flat the optimum is.
   Balanced accuracy, not accuracy, so the result does not depend on how many unanswerable
   questions the set happens to hold.

Also reported: for answerable questions with their passage present, the share of extractive
answers that contain a gold span (when answered at the chosen threshold, and at threshold 0).

Usage::

    python bench/calibrate_refusal.py --cases 200 --out bench/reports/refusal.md
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPORTS,
    DataMissing,
    Passage,
    bench_settings,
    build_kb,
    iter_cail_cases,
    machine_line,
    md_table,
    temp_home,
    write_report,
)


@dataclass
class Item:
    question: str
    case: int
    should_answer: bool
    spans: list[str]  # gold spans (empty for YES/NO and unanswerable)
    kind: str  # answerable | impossible | held-out
    score: float = 0.0
    answer: str = ""


def load_cases(n_cases: int, holdout_every: int) -> tuple[list[Passage], list[Item]]:
    """Passages to ingest and labelled questions of the first ``n_cases`` distinct cases."""
    passages: list[Passage] = []
    items: list[Item] = []
    for case, name, text, qas in iter_cail_cases(n_cases):
        held = (case // 2) % holdout_every == holdout_every - 1  # in both halves alike
        if not held:
            passages.append(Passage(f"case-{case}", name, text))
        items.extend(_items(qas, case, held))
    return passages, items


def _items(qas: list[dict], case: int, held: bool) -> list[Item]:
    out = []
    for qa in qas:
        texts = [a.get("text", "") for a in qa.get("answers", [])]
        impossible = qa.get("is_impossible") in ("true", True)
        if impossible and any(texts):
            continue  # annotators disagree: no label to trust
        spans = sorted({t for t in texts if t and t not in ("YES", "NO")})
        kind = "held-out" if held else ("impossible" if impossible else "answerable")
        out.append(Item(qa["question"].strip(), case, kind == "answerable", spans, kind))
    return out


def score_items(kb, items: list[Item]) -> None:
    """Best support score and the extractive answer (threshold 0) of every question."""
    from tqdm import tqdm

    from service.answering.pipeline import prepare

    base = kb.settings
    # the evidence score of the sentence quoting path (what refusal_threshold applies to: the reader off;
    # bench/reader.py calibrates reader_threshold)
    kb.settings = base.model_copy(update={"refusal_threshold": 0.0, "rerank_refusal_threshold": 0.0, "reader": False})
    try:
        for it in tqdm(items, desc="answer", leave=False, disable=not sys.stderr.isatty()):
            prep = prepare(kb, it.question)
            it.score = float(prep.best)
            it.answer = "".join(s.sentence for s in prep.chosen)
    finally:
        kb.settings = base


def confusion(items: list[Item], t: float) -> dict:
    ans = [i for i in items if i.should_answer]
    ref = [i for i in items if not i.should_answer]
    tpr = sum(i.score >= t for i in ans) / len(ans) if ans else 0.0  # answered when it should
    tnr = sum(i.score < t for i in ref) / len(ref) if ref else 0.0  # refused when it should
    return {"answer_rate": tpr, "refusal_rate": tnr, "balanced_acc": (tpr + tnr) / 2,
            "accuracy": (tpr * len(ans) + tnr * len(ref)) / max(1, len(items)), "n_answer": len(ans),
            "n_refuse": len(ref)}


def choose_threshold(items: list[Item]) -> float:
    """The score cut that maximises balanced accuracy (midpoint between neighbouring scores; the
    lowest such cut on exact ties, so the answerer refuses no more than it must). Taking the lowest
    cut within a tolerance of the best instead was tried: on this noisy curve it moved between runs
    and generalised worse to the report half (BA .575 vs .638)."""
    scores = sorted({round(i.score, 6) for i in items})
    mids = [(a + b) / 2 for a, b in zip(scores, scores[1:], strict=False)]
    cuts = [0.0, *mids, scores[-1] + 1e-6 if scores else 1.0]
    best = max(cuts, key=lambda t: (confusion(items, t)["balanced_acc"], -t))
    return round(best, 3)


def span_share(items: list[Item], t: float) -> tuple[float, int]:
    """Share of answered (score >= t) span questions whose answer contains a gold span."""
    pool = [i for i in items if i.kind == "answerable" and i.spans and i.score >= t]
    hit = sum(any(s in i.answer for s in i.spans) for i in pool)
    return (hit / len(pool) if pool else 0.0), len(pool)


def render(args, t: float, halves: dict[str, list[Item]], current: float, info: dict) -> str:
    rows = []
    for name, items in halves.items():
        for label, cut in (("chosen", t), ("default at run time", current)):
            c = confusion(items, cut)
            rows.append([name, f"{label} {cut:g}", c["balanced_acc"], c["answer_rate"], c["refusal_rate"],
                         c["accuracy"], c["n_answer"], c["n_refuse"]])
    spans = []
    for name, items in halves.items():
        for cut in (t, 0.0):
            share, n = span_share(items, cut)
            spans.append([name, f"{cut:g}", share, n])
    kinds = {k: sum(1 for its in halves.values() for i in its if i.kind == k)
             for k in ("answerable", "impossible", "held-out")}
    return "\n".join([
        f"Measured on {machine_line()}.", "",
        "Command: `python bench/calibrate_refusal.py " + " ".join(sys.argv[1:]) + "`", "",
        f"**Chosen refusal_threshold = {t:g}** (maximises balanced accuracy on the calibration half).", "",
        md_table(["half", "threshold", "balanced acc", "answer rate (answerable)", "refusal rate (should refuse)",
                  "accuracy", "n answer", "n refuse"], rows), "",
        "Gold span contained in the extractive answer (answerable span questions, passage in the KB):", "",
        md_table(["half", "answered at threshold >=", "share containing a gold span", "n answered"], spans), "",
        f"Data: CAIL2019 CJRC dev, first {args.cases} distinct cases ({info['passages']} in the KB, one pair of "
        f"cases in {args.holdout_every} held out); questions: {kinds['answerable']} answerable, "
        f"{kinds['impossible']} impossible, {kinds['held-out']} of held-out cases. KB built in "
        f"{info['build_s']:.0f}s, questions answered in {info['answer_s']:.0f}s. Method: module docstring.",
    ])


def curve(halves: dict[str, list[Item]], chosen: float) -> str:
    """Balanced accuracy and answer rate around the chosen threshold, both halves: how flat the
    optimum is, so a deployment can trade refusals for answers knowingly."""
    cuts = sorted({round(chosen * f, 3) for f in (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1)})
    rows = []
    for cut in cuts:
        row = [cut]
        for items in halves.values():
            c = confusion(items, cut)
            row += [c["balanced_acc"], c["answer_rate"]]
        rows.append(row)
    names = list(halves)
    return "\n".join(["", "", "## Around the optimum", "",
                      md_table(["threshold", f"BA {names[0]}", "answer rate", f"BA {names[1]}", "answer rate"],
                               rows)])


def sweep_dense_weights(kb, items: list[Item], weights: list[float]) -> str:
    """Balanced accuracy per evidence DENSE_WEIGHT (support = coverage + w x cosine), each with the
    threshold calibrated on the calibration half -> a markdown section ('' without weights)."""
    if not weights:
        return ""
    import copy

    from docqa.text import coverage as evidence

    keep = evidence.DENSE_WEIGHT
    rows = []
    try:
        for w in weights:
            evidence.DENSE_WEIGHT = w
            its = copy.deepcopy(items)
            score_items(kb, its)
            cal = [i for i in its if i.case % 2 == 0]
            rep = [i for i in its if i.case % 2 == 1]
            t = choose_threshold(cal)
            rows.append([w, t, confusion(cal, t)["balanced_acc"], confusion(rep, t)["balanced_acc"],
                         confusion(rep, t)["answer_rate"], confusion(rep, t)["refusal_rate"]])
            print(f"dense weight {w}: {rows[-1]}", flush=True)
    finally:
        evidence.DENSE_WEIGHT = keep
    return "\n".join(["", "", f"## Evidence dense weight (product: {keep:g})", "",
                      md_table(["DENSE_WEIGHT", "threshold (calibration half)", "BA calibration", "BA report",
                                "answer rate (report)", "refusal rate (report)"], rows)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=200, help="first N distinct CAIL2019 dev cases")
    p.add_argument("--holdout-every", type=int, default=4, help="every Nth case is left out of the KB")
    p.add_argument("--dense-weights", default="",
                   help="comma list of evidence DENSE_WEIGHT values to compare (each re-scores every question "
                   "and is calibrated on its own); the report's main table uses the product's value")
    p.add_argument("--rerank-model", default=None,
                   help="calibrate rerank_refusal_threshold: answer with this cross-encoder (a `docqa finetune "
                   "rerank` output), whose best score decides refusal (report: refusal_rerank.md)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cases < 4 or args.holdout_every < 2:
        p.error("--cases must be >= 4 and --holdout-every >= 2")
    args.out = args.out or REPORTS / ("refusal_rerank.md" if args.rerank_model else "refusal.md")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        passages, items = load_cases(args.cases, args.holdout_every)
    except DataMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with temp_home():
        settings = bench_settings()
        t0 = time.perf_counter()
        kb, _ = build_kb(passages, "cail", settings, progress=sys.stderr.isatty())
        info = {"passages": len(passages), "build_s": time.perf_counter() - t0}
        if args.rerank_model:  # the KB reranks; prepare() then refuses on the reranker's best score
            kb.settings = kb.settings.model_copy(update={"rerank_model": args.rerank_model})
        try:
            kb.warm_up()
            sweep = sweep_dense_weights(kb, items, [float(w) for w in args.dense_weights.split(",") if w.strip()])
            t1 = time.perf_counter()
            score_items(kb, items)
            info["answer_s"] = time.perf_counter() - t1
            current = kb.settings.rerank_refusal_threshold if args.rerank_model else kb.settings.refusal_threshold
            if args.rerank_model and kb.reranker_error:
                print(f"error: {kb.reranker_error}", file=sys.stderr)
                return 2
        finally:
            kb.close()
    halves = {"calibration (even cases)": [i for i in items if i.case % 2 == 0],
              "report (odd cases)": [i for i in items if i.case % 2 == 1]}
    t = choose_threshold(halves["calibration (even cases)"])
    body = render(args, t, halves, current, info) + curve(halves, t) + sweep
    print(body)
    out = write_report(args.out, "Refusal threshold calibration (CAIL2019)", body)
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
