"""Retrieval quality: recall@1/5/20 and MRR@10 of keyword, dense and hybrid search.

Each passage of CMRC 2018 (trial) and DRCD (dev) becomes one document of a fresh KB, built with
the real ingestion pipeline and the KB's default settings; each question is a query. A hit is a
passage returned by ``docqa.search.search`` (which matches articles, segments and sentences and
hands back distinct segments) from the question's gold passage. Passages are deduplicated by text.

Every row is ``search(kb, question, k=20, mode=...)`` itself: ``keyword``, ``dense`` and ``hybrid``
with the defaults of ``docqa/settings/parts.py``, and ``rrf ...`` rows with other fusion settings laid
over the KB's settings. Query vectors are computed once per question in one batch and memoised
(``_QueryCache``), so the variants cost no re-encoding; everything else runs as in production.

Usage::

    python bench/retrieval.py --datasets cmrc,drcd --limit-questions 1500 --out bench/reports/retrieval.md
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
    Dataset,
    Question,
    bench_settings,
    build_kb,
    first_hit_rank,
    load_squad,
    machine_line,
    md_table,
    mrr_at,
    recall_at,
    temp_home,
    write_report,
)

DEPTH = 20  # deepest cut-off reported (R@20)
# Fusion variants reported beside the defaults: (dense weight, lexical weight, rrf_k).
VARIANTS = [(1.0, 1.0, 60), (1.0, 1.0, 20), (1.0, 1.0, 10), (1.0, 0.7, 60), (1.0, 0.5, 60), (0.7, 1.0, 60),
            (0.5, 1.0, 60), (0.3, 1.0, 10)]


@dataclass
class Row:
    dataset: str
    mode: str
    ranks: list[int | None]

    def cells(self) -> list:
        r = self.ranks
        return [self.dataset, self.mode, recall_at(r, 1), recall_at(r, 5), recall_at(r, 20), mrr_at(r, 10), len(r)]


HEADER = ["dataset", "mode", "R@1", "R@5", "R@20", "MRR@10", "n"]


class _QueryCache:
    """The KB's embedder with query vectors memoised: a bench encodes each question once (batched)
    and then searches it under many settings. Documents pass straight through."""

    def __init__(self, embedder, questions: list[str]):
        self._inner = embedder
        vecs = embedder.encode_queries(questions)
        self._cache = {q: vecs[i:i + 1] for i, q in enumerate(questions)}

    def encode_queries(self, texts: list[str]):
        import numpy as np

        if all(t in self._cache for t in texts):
            return np.concatenate([self._cache[t] for t in texts])
        return self._inner.encode_queries(texts)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def run_mode(kb, questions: list[Question], mode: str, label: str, dataset: str, **fusion) -> Row:
    """Search every question with ``mode`` (and fusion settings laid over the KB's) -> a Row."""
    from tqdm import tqdm

    from docqa.search import Mode, search

    base = kb.settings
    kb.settings = base.model_copy(update=fusion) if fusion else base
    try:
        ranks = [first_hit_rank([h.doc_id for h in search(kb, q.text, DEPTH, mode=Mode(mode))], q.gold)
                 for q in tqdm(questions, desc=f"{dataset} {label}", leave=False, disable=not sys.stderr.isatty())]
    finally:
        kb.settings = base
    return Row(dataset, label, ranks)


def evaluate(dataset: Dataset, limit: int | None, embed_model: str | None = None,
             independent: bool = False) -> tuple[list[Row], dict]:
    """Build the KB of one dataset and score every mode and fusion variant on it. ``independent``:
    every unit embedded on its own instead of read off one pass over the segments."""
    passages, questions = load_squad(dataset, limit)
    model, _, backend = (embed_model or "").partition(":")  # "MODEL:BACKEND" picks embed_backend too
    over = {"embed_model": model} if model else {}
    if backend:
        over["embed_backend"] = backend
    if independent:
        over["segment_pass"] = False
    settings = bench_settings(**over)
    t0 = time.perf_counter()
    tag = f"{(model or 'default').rsplit('/', 1)[-1]}{'-' + backend if backend else ''}" \
          f"{'-independent' if independent else ''}"
    kb, report = build_kb(passages, f"bench-{dataset.value}-{tag}", settings, progress=sys.stderr.isatty())
    build_s = time.perf_counter() - t0
    try:
        kb.warm_up()
        t1 = time.perf_counter()
        kb.embedder = _QueryCache(kb.embedder, list({q.text: None for q in questions}))
        s = kb.settings
        name = dataset.value if not (embed_model or independent) else f"{dataset.value} {tag}"
        rows = [run_mode(kb, questions, "keyword", "keyword", name),
                run_mode(kb, questions, "dense", "dense", name),
                run_mode(kb, questions, "hybrid", f"hybrid (default w_d={s.dense_weight:g} w_l={s.lexical_weight:g} "
                         f"k={s.rrf_k})", name)]
        for wd, wl, k in VARIANTS:
            if (wd, wl, k) != (s.dense_weight, s.lexical_weight, s.rrf_k):
                rows.append(run_mode(kb, questions, "hybrid", f"rrf w_d={wd:g} w_l={wl:g} k={k}", name,
                                     dense_weight=wd, lexical_weight=wl, rrf_k=k))
        info = {"passages": len(passages), "questions": len(questions), "units": report.units,
                "chars": report.chars, "build_s": round(build_s, 1), "search_s": round(time.perf_counter() - t1, 1)}
    finally:
        kb.close()
    return rows, info


def render(results: dict[str, tuple[list[Row], dict]], args) -> str:
    parts = [f"Measured on {machine_line()}.", "",
             "Command: `python bench/retrieval.py " + " ".join(sys.argv[1:]) + "`", "",
             "A hit is a passage returned by `search(kb, q, k=20)` from the question's gold passage. `hybrid "
             "(default ...)` uses the defaults of `docqa/settings.py` at the time of the run; `rrf ...` rows lay "
             "other fusion settings over them (same KB, same candidates).", ""]
    rows = [r.cells() for rs, _ in results.values() for r in rs]
    parts += [md_table(HEADER, rows), "", "Subsets and timings:", ""]
    subset = f"the first {args.limit_questions}" if args.limit_questions else "all"
    for name, (_, info) in results.items():
        parts.append(f"- {name}: {info['passages']} passages (deduplicated, {info['chars']} characters) -> "
                     f"{info['units']} units (all levels), {info['questions']} questions ({subset} answerable "
                     f"questions of the file, and the passages up to them); KB built in {info['build_s']:.0f}s, "
                     f"all rows searched in {info['search_s']:.0f}s (wall time: bench/latency.py measures cost)")
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="cmrc,drcd", help="comma list of: " + ", ".join(d.value for d in Dataset))
    p.add_argument("--limit-questions", type=int, default=1500,
                   help="first N answerable questions per dataset (0 = all); keeps DRCD within the time budget")
    p.add_argument("--embed-models", default="",
                   help="comma list of embedding models to compare in one run, each MODEL or MODEL:BACKEND "
                   "(torch | onnx | onnx-int8; default: the settings' model and backend)")
    p.add_argument("--independent", action="store_true",
                   help="also build each KB with segment_pass=false (every unit embedded on its own)")
    p.add_argument("--out", type=Path, default=REPORTS / "retrieval.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        datasets = [Dataset(x.strip()) for x in args.datasets.split(",") if x.strip()]
    except ValueError as e:
        print(f"error: {e}; choose from {', '.join(d.value for d in Dataset)}", file=sys.stderr)
        return 2
    results: dict[str, tuple[list[Row], dict]] = {}
    try:
        with temp_home():
            models = [m.strip() for m in args.embed_models.split(",") if m.strip()] or [None]
            runs = [(m, False) for m in models] + ([(m, True) for m in models] if args.independent else [])
            for ds in datasets:
                for model, indep in runs:
                    key = f"{ds.value} {model or 'default model'}" + (" (segment_pass=false)" if indep else "")
                    results[key] = evaluate(ds, args.limit_questions or None, model, indep)
                    rows, info = results[key]
                    print(md_table(HEADER, [r.cells() for r in rows]))
                    print(f"  {info}", flush=True)
    except DataMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = write_report(args.out, "Retrieval quality: keyword vs dense vs hybrid", render(results, args))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
