"""Retrieval latency on a 100k-unit KB, ingest throughput, and KB size on disk.

Three measurements, all on this machine and in one run:

1. **Ingest throughput** (characters/second): real CMRC/DRCD passages as a JSONL file through
   ``ingest.pipeline.ingest_paths`` with the default settings (chunking, key info, all unit levels,
   embedding, FAISS, tantivy, SQLite, commit). ``--throughput-passages`` of them: embedding 100k
   units on 2 CPU cores takes far longer than a bench should, so throughput is measured on a subset.
2. **A 100k-unit KB**: the same passages cut into segment-sized chunks by the product's chunker;
   ``--base-units`` distinct chunks are embedded once, and the KB is filled to ``--units`` segment
   units by repeating them with a light variation (a numbered tag appended to the text, so the
   keyword index holds distinct documents). Repeats reuse the vector of their base chunk
   (``_ReusedVectors``); everything else (store, FAISS, tantivy, commit) is the real ``KBWriter``.
   Repeats make keyword posting lists and dense near-ties denser than in real text, so the
   figures are, if anything, pessimistic.
3. **Search latency**: ``docqa.search.search(kb, q, k=5)`` per mode over ``--queries`` real
   questions, after ``--warmup`` queries; wall time per call including query encoding, excluding
   any LLM. Reported as p50/p95/p99 in milliseconds, plus query encoding alone as a baseline.

Usage::

    python bench/latency.py --units 100000 --out bench/reports/latency.md
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPORTS,
    DataMissing,
    Dataset,
    Passage,
    Question,
    bench_settings,
    dir_size,
    load_squad,
    machine_line,
    md_table,
    percentiles,
    temp_home,
    write_jsonl,
    write_report,
)

TARGET_P50_MS, TARGET_P95_MS = 30.0, 60.0
DOCS_PER_KB_DOC = 10  # segment units per synthetic document of the 100k KB


def corpus(limit_questions: int | None) -> tuple[list[Passage], list[Question]]:
    """CMRC then DRCD passages and questions (real text, Simplified and Traditional Chinese)."""
    passages, questions = [], []
    for ds in (Dataset.CMRC, Dataset.DRCD):
        p, q = load_squad(ds, limit_questions)
        passages += p
        questions += q
    return passages, questions


def measure_ingest(passages: list[Passage], settings) -> dict:
    """Ingest ``passages`` through the real pipeline into a fresh KB; chars/s and units/s."""
    from docqa.models.embedder import embedder_for
    from ingest.pipeline import ingest_paths

    embedder_for(settings).warm_up()  # not timed
    with tempfile.TemporaryDirectory(prefix="docqa-corpus-") as d:
        path = write_jsonl(passages, Path(d) / "throughput.jsonl")
        report = ingest_paths([path], "throughput", settings, progress=sys.stderr.isatty())
    return {"passages": len(passages), "chars": report.chars, "units": report.units, "seconds": report.seconds,
            "chars_per_s": report.chars / report.seconds, "units_per_s": report.units / report.seconds}


def measure_cost(passages: list[Passage], configs: list[tuple[str, str]], rounds: int) -> list[dict]:
    """Ingest CPU-seconds of the default pipeline vs its floor, per (model, backend), interleaved.

    The floor is the least any ingest of these passages can cost with that encoder: the segment
    texts the KB's own chunker cuts, embedded once (``encode_docs``, cache cleared). The default is
    ``ingest_paths`` with the product settings (all unit levels, keyphrases, FAISS, tantivy, SQLite,
    commit) into a fresh KB. Both are process CPU time (all threads), so a busy machine inflates
    neither; rounds alternate default and floor so drift hits both alike."""
    from docqa.document import Document
    from docqa.models.embedder import embedder_for
    from ingest.chunking import chunk_document
    from ingest.loaders.text import text_to_blocks
    from ingest.pipeline import ingest_paths

    out = []
    with tempfile.TemporaryDirectory(prefix="docqa-cost-") as d:
        path = write_jsonl(passages, Path(d) / "cost.jsonl")
        chars = sum(len(p.text) for p in passages)
        for model, backend in configs:
            settings = bench_settings(embed_model=model, embed_backend=backend)
            emb = embedder_for(settings)
            emb.warm_up()
            docs = [Document(p.pid, p.pid, p.title, text_to_blocks(p.text).blocks, "") for p in passages]
            segs = [u.text for doc in docs for u in chunk_document(doc, settings)]
            default, floor = [], []
            for r in range(rounds):
                emb.clear_cache()
                t = time.process_time()
                emb.encode_docs(segs)
                floor.append(time.process_time() - t)
                emb.clear_cache()
                t = time.process_time()
                ingest_paths([path], f"cost-{len(out)}-{r}", settings.model_copy(update={"home": Path(d) / f"h{r}"}),
                             progress=False)
                default.append(time.process_time() - t)
            ratio = min(default) / min(floor)  # each at its least disturbed round
            out.append({"model": model.rsplit("/", 1)[-1], "backend": backend, "segments": len(segs), "chars": chars,
                        "floor_cpu_s_per_100k": min(floor) / chars * 1e5,
                        "default_cpu_s_per_100k": min(default) / chars * 1e5, "ratio": ratio,
                        "ratios": [round(a / b, 2) for a, b in zip(default, floor, strict=True)]})
            print(f"cost: {out[-1]}", flush=True)
    return out


def base_chunks(passages: list[Passage], n: int, settings) -> list[str]:
    """Up to ``n`` distinct segment texts cut from the passages by the KB's own chunker."""
    from docqa.document import Document
    from ingest.chunking import chunk_document
    from ingest.loaders.text import text_to_blocks

    out: dict[str, None] = {}
    for p in passages:
        doc = Document(p.pid, p.pid, p.title, text_to_blocks(p.text).blocks, "")
        for u in chunk_document(doc, settings):
            out[u.text] = None
            if len(out) >= n:
                return list(out)
    return list(out)


class _ReusedVectors:
    """The KB's embedder, except that a repeated chunk gets its base chunk's vector back instead of
    being embedded again (only ever used to fill the latency KB; queries are encoded for real)."""

    def __init__(self, embedder, bases: list[str]):
        self._inner = embedder
        vecs = embedder.encode_docs(bases, show_progress=sys.stderr.isatty())
        self._vec = {t: vecs[i] for i, t in enumerate(bases)}

    def encode_docs(self, texts: list[str], *, show_progress: bool = False):
        import numpy as np

        return np.stack([self._vec[t.rsplit(" #", 1)[0]] for t in texts]).astype(np.float32)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def build_big_kb(name: str, bases: list[str], n_units: int, settings) -> dict:
    """Fill KB ``name`` with ``n_units`` segment units (variations of ``bases``) via KBWriter."""
    from tqdm import tqdm

    from docqa.document import Block, Document
    from docqa.kb import KBWriter
    from docqa.units import Level, Unit

    t0 = time.perf_counter()
    with KBWriter(name, settings) as w:
        w.embedder = _ReusedVectors(w.embedder, bases)
        embed_s = time.perf_counter() - t0
        n_docs = (n_units + DOCS_PER_KB_DOC - 1) // DOCS_PER_KB_DOC
        for d in tqdm(range(n_docs), desc="fill KB", unit="doc", disable=not sys.stderr.isatty()):
            texts = [f"{bases[(d * DOCS_PER_KB_DOC + i) % len(bases)]} #{d}"
                     for i in range(min(DOCS_PER_KB_DOC, n_units - d * DOCS_PER_KB_DOC))]
            doc = Document(f"doc{d}", f"bench://doc{d}", f"doc {d}", [Block(t) for t in texts], f"h{d}")
            units = [Unit(doc_id=doc.doc_id, text=t, level=Level.SEGMENT, ord=i) for i, t in enumerate(texts)]
            w.put_documents([(doc, units)])
        counts = w.commit()
    return {"units": counts["units"], "build_s": time.perf_counter() - t0, "embed_s": embed_s}


def time_calls(fn, queries: list[str], warmup: int) -> list[float]:
    """Milliseconds per call of ``fn(q)`` over ``queries`` after ``warmup`` untimed calls."""
    for q in queries[:warmup]:
        fn(q)
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t) * 1000)
    return out


def measure_search(name: str, settings, queries: list[str], warmup: int) -> list[list]:
    """p50/p95/p99 of search() per mode and of query encoding alone -> table rows."""
    from docqa.kb import KnowledgeBase
    from docqa.search import Mode, search

    kb = KnowledgeBase.open(name, settings)
    kb.warm_up()
    rows = []
    try:
        enc = time_calls(lambda q: kb.embedder.encode_queries([q]), queries, warmup)
        rows.append(["query encoding only", *percentiles(enc).values(), len(enc)])
        for mode in (Mode.HYBRID, Mode.DENSE, Mode.KEYWORD):
            ms = time_calls(lambda q, m=mode: search(kb, q, 5, mode=m), queries, warmup)
            rows.append([f"search {mode.value} k=5", *percentiles(ms).values(), len(ms)])
    finally:
        kb.close()
    return rows


def render(args, ingest: dict, big: dict, disk: int, rows: list[list], n_queries: int) -> str:
    per100k = disk / big["units"] * 100_000 / 2**20
    hybrid = rows[1]
    verdict = (f"hybrid p50 {hybrid[1]:.1f} ms (target <= {TARGET_P50_MS:g}): "
               f"{'met' if hybrid[1] <= TARGET_P50_MS else 'MISSED'}; p95 {hybrid[2]:.1f} ms (target <= "
               f"{TARGET_P95_MS:g}): {'met' if hybrid[2] <= TARGET_P95_MS else 'MISSED'}")
    return "\n".join([
        f"Measured on {machine_line()}.", "",
        "Command: `python bench/latency.py " + " ".join(sys.argv[1:]) + "`", "",
        "## Search latency (ms per call, query encoding included, no LLM)", "",
        md_table(["what", "p50", "p95", "p99", "n"], rows), "", f"**{verdict}**", "",
        f"{n_queries} real questions (CMRC 2018 trial + DRCD dev), {args.warmup} warm-up calls first.", "",
        "## Ingest throughput (real pipeline, default settings)", "",
        md_table(["passages", "characters", "units (all levels)", "seconds", "chars/s", "units/s"],
                 [[ingest["passages"], ingest["chars"], ingest["units"], round(ingest["seconds"], 1),
                   round(ingest["chars_per_s"]), round(ingest["units_per_s"], 1)]]), "",
        f"Measured on the first {ingest['passages']} CMRC/DRCD passages only: embedding 100k units on this "
        "machine's CPU would take far longer than a bench run.", "",
        "## The 100k-unit KB", "",
        f"- {big['units']} segment units: {args.base_units} distinct segment-sized chunks of CMRC/DRCD "
        f"passages (the product's chunker), embedded once ({big['embed_s']:.0f}s), repeated with a numbered "
        f"tag to reach {args.units} units; repeats reuse their base chunk's vector. Written by the real "
        f"KBWriter in {big['build_s']:.0f}s in total.",
        f"- Size on disk (store.sqlite + vectors.faiss + tantivy): {disk / 2**20:.1f} MiB, i.e. "
        f"**{per100k:.1f} MiB per 100k units** (flat FAISS index: {384 * 4 * 100_000 / 2**20:.1f} MiB of it "
        "for 384-d float32 vectors).",
    ])


def cost_corpus(passages: list[Passage], n: int) -> list[Passage]:
    """CMRC/DRCD passages plus SQuAD2 ones (English), as the issue's side-by-side measurement mixed them."""
    out = passages[: max(n - n // 5, 1)]
    try:
        out += load_squad(Dataset.SQUAD2, None)[0][: n // 5]
    except DataMissing:
        pass
    return out


def render_cost(cost: list[dict], args) -> str:
    if not cost:
        return ""
    rows = [[c["model"], c["backend"], c["segments"], c["chars"], round(c["floor_cpu_s_per_100k"], 1),
             round(c["default_cpu_s_per_100k"], 1), round(c["ratio"], 2), " ".join(map(str, c["ratios"]))]
            for c in cost]
    return "\n".join(["", "", "## Ingest cost vs the floor (CPU-seconds per 100k characters)", "",
                      md_table(["model", "backend", "segments", "characters", "floor", "default ingest",
                                "ratio (of the minima)", "ratios per round"], rows), "",
                      "Floor: the segment texts the KB's chunker cuts, embedded once. Default ingest: the whole "
                      "pipeline with the product settings into a fresh KB. Process CPU time, rounds interleaved "
                      f"({args.cost_rounds}); each figure is the least disturbed round's (the minimum), since a "
                      "busy machine only ever adds time; aim: default <= 1.5x floor."])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, default=100_000, help="units in the latency KB")
    p.add_argument("--base-units", type=int, default=1000, help="distinct chunks embedded for the latency KB")
    p.add_argument("--throughput-passages", type=int, default=60, help="passages ingested to measure chars/s")
    p.add_argument("--queries", type=int, default=300, help="questions timed per mode")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--cost-passages", type=int, default=150, help="passages for the ingest cost vs floor (0: skip)")
    p.add_argument("--cost-rounds", type=int, default=3)
    p.add_argument("--cost-configs", default="intfloat/multilingual-e5-small:torch,"
                   "sentence-transformers/all-MiniLM-L6-v2:torch",
                   help="comma list of MODEL:BACKEND for the ingest cost comparison")
    p.add_argument("--out", type=Path, default=REPORTS / "latency.md")
    args = p.parse_args(argv)
    if min(args.units, args.base_units, args.throughput_passages, args.queries) < 1 or args.warmup < 0:
        p.error("--units, --base-units, --throughput-passages and --queries must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        passages, questions = corpus(None)
    except DataMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    random.Random(0).shuffle(questions)
    queries = [q.text for q in questions[:args.queries]]
    with temp_home() as home:
        settings = bench_settings()
        configs = [tuple(c.rsplit(":", 1)) for c in args.cost_configs.split(",") if c.strip()]
        cost = measure_cost(cost_corpus(passages, args.cost_passages), configs, args.cost_rounds) \
            if args.cost_passages else []
        ingest = measure_ingest(passages[:args.throughput_passages], settings)
        print(f"ingest: {ingest}", flush=True)
        # search latency and index size: the big KB's chunks reuse their base chunks' vectors, so it stores no
        # evidence vectors (they would need every variant's sentences embedded; bench/load.py measures them)
        big = build_big_kb("latency", base_chunks(passages, args.base_units, settings), args.units,
                           settings.with_overrides({"evidence_vectors": False}))
        disk = dir_size(home / "latency")
        print(f"KB: {big}, {disk / 2**20:.1f} MiB on disk", flush=True)
        rows = measure_search("latency", settings, queries, args.warmup)
    print(md_table(["what", "p50", "p95", "p99", "n"], rows))
    out = write_report(args.out, "Retrieval latency, ingest throughput, KB size",
                       render(args, ingest, big, disk, rows, len(queries)) + render_cost(cost, args))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
