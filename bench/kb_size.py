"""KBs of 20k to 1M units on this machine (#24, cliff 3): disk, start-up, memory, search and answer latency,
and where `flat_fp16` should give way to `hnsw`.

The KBs are built by bench/commit_cost.py's builder from a source KB built by `docqa ingest` (real CMRC/DRCD/
CAIL text and its real vectors, e.g. bench/load.py's 20k-unit KB): its documents added ``copies`` times,
**copies marked `#copyK`**, each copy's vectors moved by a little noise (``--jitter``, renormalised) so that an
ANN index sees distinct points. Evidence vectors are off in them (answers embed passage sentences as a KB
without them does; the same at every size, so the ratio between sizes is what to read).

Per size: `docqa serve --kb big` started as a child, seconds to /readyz 200; 1 client over HTTP: `/v1/search`
(hybrid) and `/v1/chat` p50/p95 on CMRC/DRCD questions; the server's RSS after them. Then, in a child process
per size: in-process search p50/p95 and CPU-ms per query for hybrid / dense / keyword, and (up to
``--hnsw-max`` units) an HNSW index over the same vectors: build seconds, recall@10 against the exact scan and
latency at several efSearch.

    python bench/kb_size.py --source-home /tmp/loadhome/h --copies 1,5,15,48 [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REPO,
    REPORTS,
    Dataset,
    dir_size,
    load_squad,
    machine_line,
    md_table,
    percentiles,
    write_report,  # noqa: E402
)

KB = "big"
EF = (16, 64, 256, 512, 1024)


def questions(n: int) -> list[str]:
    out = []
    for ds in (Dataset.CMRC, Dataset.DRCD):
        out += [q.text for q in load_squad(ds)[1]]
    step = max(1, len(out) // n)
    return out[::step][:n]


def serve_probe(home: Path, qs: list[str], chats: int) -> dict:
    """Start `docqa serve`, time it to ready, then search and chat with one client; the server's RSS."""
    import httpx

    from bench.load import Server

    server = Server(home, kb=KB)
    t0 = time.perf_counter()
    try:
        server.wait_ready(timeout=900)
        ready = time.perf_counter() - t0
        with httpx.Client(base_url=server.url, timeout=300) as c:
            for q in qs[:3]:
                c.post("/v1/search", json={"query": q, "kb": KB})
            search_ms, chat_ms = [], []
            for q in qs:
                t = time.perf_counter()
                r = c.post("/v1/search", json={"query": q, "kb": KB, "k": 5})
                search_ms.append(1000 * (time.perf_counter() - t))
                assert r.status_code == 200, r.text
            for q in qs[:chats]:
                t = time.perf_counter()
                r = c.post("/v1/chat", json={"question": q, "kb": KB})
                chat_ms.append(1000 * (time.perf_counter() - t))
                assert r.status_code == 200, r.text
        return {"ready_s": ready, "rss_mb": server.rss_mb(), "http_search": percentiles(search_ms),
                "http_chat": percentiles(chat_ms)}
    finally:
        server.stop()


def inprocess_probe(home: Path, qs: list[str], hnsw: bool) -> dict:
    """In a child process: search latency per mode, and the HNSW build/recall/latency over the KB's vectors."""
    script = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from bench.kb_size import _inprocess; "
              f"from pathlib import Path; print(json.dumps(_inprocess(Path({str(home)!r}), {qs!r}, {hnsw!r})))")
    env = {**os.environ, "DOCQA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-1500:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timed(fn, items) -> tuple[dict, float]:
    wall, cpu0 = [], time.process_time()
    for x in items:
        t = time.perf_counter()
        fn(x)
        wall.append(1000 * (time.perf_counter() - t))
    return percentiles(wall), 1000 * (time.process_time() - cpu0) / len(items)


def _inprocess(home: Path, qs: list[str], hnsw: bool) -> dict:
    import faiss
    import numpy as np

    from docqa.kb import KnowledgeBase
    from docqa.search import search
    from docqa.settings import load_settings

    t0 = time.perf_counter()
    kb = KnowledgeBase.open(KB, load_settings(home=home))
    kb.warm_up()
    out: dict = {"open_warm_s": time.perf_counter() - t0, "units": len(kb.vectors)}
    for q in qs[:3]:
        search(kb, q, 5)
    for mode in ("hybrid", "dense", "keyword"):
        p, cpu = _timed(lambda q, m=mode: search(kb, q, 5, mode=m), qs)
        out[mode] = {**p, "cpu_ms": cpu}
    if not hnsw:
        return out
    vecs = np.concatenate([v for _, v in kb.vectors.batches()])  # one segment: the builder commits once
    qv = kb.embedder.encode_queries(qs).astype(np.float32)
    exact = faiss.IndexFlatIP(vecs.shape[1])
    exact.add(vecs)
    _, truth = exact.search(qv, 10)
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(vecs.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(vecs)
    out["hnsw_build_s"] = time.perf_counter() - t
    out["hnsw"] = {}
    for ef in EF:
        index.hnsw.efSearch = ef
        _, got = index.search(qv, 10)
        recall = float(np.mean([len(set(g) & set(tr)) / 10 for g, tr in zip(got, truth, strict=True)]))
        p, cpu = _timed(lambda v, i=index: i.search(v[None, :], 10), qv)
        out["hnsw"][ef] = {"recall10": recall, **p, "cpu_ms": cpu}
    p, cpu = _timed(lambda v: exact.search(v[None, :], 10), qv)
    out["exact_f32"] = {**p, "cpu_ms": cpu}
    return out


def main(argv=None) -> int:
    from bench.commit_cost import build

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-home", type=Path, required=True)
    ap.add_argument("--source-kb", default="load")
    ap.add_argument("--copies", default="1,5,15,48")
    ap.add_argument("--jitter", type=float, default=0.05)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--chats", type=int, default=40)
    ap.add_argument("--evidence", action="store_true",
                    help="store evidence vectors in the KBs (copied from the source KB's, none embedded): for "
                         "bench/load.py --kb big at these sizes")
    ap.add_argument("--hnsw-max", type=int, default=400_000, help="build HNSW for KBs up to this many units")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPORTS / "kb_size.md")
    ap.add_argument("--report-only", action="store_true", help="write the report from the --out .json of a run")
    args = ap.parse_args(argv)
    if args.report_only:
        report(args, json.loads(args.out.with_suffix(".json").read_text()))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="docqa-size-"))
    qs = questions(args.queries)
    results = []
    for copies in (int(c) for c in args.copies.split(",")):
        home = work / f"home-{copies}"
        row: dict = {"copies": copies}
        if not (home / KB / "manifest.json").is_file():
            t = time.perf_counter()
            row["build"] = build(REPO, args.source_home, args.source_kb, home, copies, jitter=args.jitter,
                                 evidence=args.evidence)
            row["build"]["wall_s"] = time.perf_counter() - t
        m = json.loads((home / KB / "manifest.json").read_text())
        row["units"] = m["counts"]["units"]
        row["disk_mb"] = dir_size(home / KB / f"gen-{m['generation']:06d}") / 2**20
        print(f"[size] {copies} copies: {row['units']:,} units, {row['disk_mb']:.0f} MB", flush=True)
        row["serve"] = serve_probe(home, qs, args.chats)
        print(f"[size] serve: {row['serve']}", flush=True)
        row["inproc"] = inprocess_probe(home, qs, row["units"] <= args.hnsw_max)
        print(f"[size] in-process: {row['inproc']}", flush=True)
        results.append(row)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    report(args, results)
    return 0


def _p(d: dict, q) -> float:
    """A percentile or figure of a result, whether it came back from JSON (string keys) or not."""
    return d[q] if q in d else d[str(q)]


def report(args, results: list[dict]) -> None:
    rows = []
    for r in results:
        s, i = r["serve"], r["inproc"]
        rows.append([f"{r['units']:,}", f"{r['disk_mb']:.0f}", f"{1024 * 1024 * r['disk_mb'] / r['units']:.0f}",
                     f"{s['ready_s']:.1f}", f"{s['rss_mb']:.0f}",
                     f"{_p(i['hybrid'], 50):.1f} / {_p(i['hybrid'], 95):.1f}", f"{i['hybrid']['cpu_ms']:.1f}",
                     f"{_p(i['dense'], 50):.1f}", f"{_p(i['keyword'], 50):.1f}",
                     f"{_p(s['http_search'], 50):.0f} / {_p(s['http_search'], 95):.0f}",
                     f"{_p(s['http_chat'], 50):.0f} / {_p(s['http_chat'], 95):.0f}"])
    hn = []
    for r in results:
        i = r["inproc"]
        if "hnsw" not in i:
            continue
        for ef, h in i["hnsw"].items():
            hn.append([f"{r['units']:,}", f"{i['hnsw_build_s']:.0f}", ef, f"{h['recall10']:.3f}", f"{_p(h, 50):.2f}",
                       f"{h['cpu_ms']:.2f}", f"{_p(i['exact_f32'], 50):.2f}"])
    base = _p(results[0]["serve"]["http_chat"], 50)
    body = [
        f"Measured by `python bench/kb_size.py --source-home {args.source_home} --copies {args.copies} "
        f"--jitter {args.jitter}{' --evidence' if args.evidence else ''}` on {machine_line()}.",
        "",
        f"KBs built from KB `{args.source_kb}` (`docqa ingest` of CMRC 2018 / DRCD / CAIL2019 text): its documents "
        "added `copies` times, **copies marked `#copyK`, not new text**, each copy's vectors moved by noise "
        f"(std {args.jitter}, renormalised) so an ANN index sees distinct points; vector_index flat_fp16, one "
        "segment, " + ("evidence vectors copied from the source's (as a KB ingested by docqa has them; none "
                       "embedded by the build). " if args.evidence else
                       "evidence vectors off (the same at every size). ") + "Latencies in ms: p50 / p95 of "
        f"{args.queries} CMRC/DRCD questions (chat: the first {args.chats}), one client, after 3 warm-up queries. "
        "Answers are not comparable across sizes: in the copied KBs a question's best passages are copies of "
        "one text, which search returns once, so an answer there reads fewer passages than in the 20k KB; "
        "read the chat column as what size adds, not as answer cost. "
        "In-process modes run in the order hybrid, dense, keyword over the same questions: hybrid pays for "
        "embedding each question, dense then finds it in the query cache (so its column is the FAISS scan and "
        "fusion); CPU-ms is process CPU time per query (both cores).",
        "",
        md_table(["units", "disk MB", "bytes/unit", "serve: ready s", "server RSS MB", "hybrid search in-process",
                  "hybrid CPU-ms", "dense p50", "keyword p50", "/v1/search HTTP", "/v1/chat HTTP"], rows),
        "",
        "Answer p50 relative to the smallest KB: " + ", ".join(
            f"{r['units']:,}: {_p(r['serve']['http_chat'], 50) / base:.2f}x" for r in results) + ".",
        "",
        "## flat_fp16 or hnsw",
        "",
        "HNSW (M 32) over the same vectors, float32, searched for the top 10 of each question; recall@10 against "
        "the exact scan (float32 flat, its latency in the last column).",
        "",
        md_table(["units", "HNSW build s", "efSearch", "recall@10", "p50 ms", "CPU-ms", "exact scan p50 ms"], hn)
        if hn else "(no KB within --hnsw-max)",
        "",
        "Aims (#24) at 1M units: hybrid search p50 <= 30 ms (flat_fp16), the hnsw point with recall@10 >= .99, server "
        "RSS <= 3 GB, ready <= 30 s, answer p50 within 1.5x of that at 20k units.",
    ]
    write_report(args.out, "KB size: 20k to 1M units on this machine", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    sys.exit(main())
