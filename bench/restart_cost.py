"""What a restart costs an answer (#24, cliff 1), apart from what repeated questions save.

bench/load.py's warm phases get cheaper the longer they run (77 -> 37 -> 26 -> 22 server CPU-ms per
request in one run) because its clients draw from a fixed pool of questions: later phases ask more questions
already asked, and an answer to a repeated question is served from caches. That mixes two things. This bench
separates them, one client, on a real `docqa serve` started fresh for each run:

1. the first ``--n`` questions after the start, none asked before (what a restart costs);
2. the next ``--n``, none asked before either (the same process, warm);
3. the first ``--n`` again (repeats: what question-level caches save).

Figures: the server's CPU-ms per answer (``/proc/<pid>/stat``, independent of other load) and wall ms, the
median over ``--runs`` runs with different question draws.

    python bench/restart_cost.py --home /tmp/loadhome/h [--kb load] [--n 120] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPORTS, Dataset, load_squad, machine_line, md_table, write_report  # noqa: E402

STEPS = ("right after the start, unseen questions", "warm process, unseen questions", "warm, questions asked before")


def one_run(home: Path, kb: str, questions: list[str], n: int, seed: int) -> dict[str, tuple[float, float]]:
    import httpx

    from bench.load import Server

    qs = list(questions)
    random.Random(seed).shuffle(qs)
    first, second = qs[:n], qs[n:2 * n]
    server = Server(home, kb=kb)
    out = {}
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for step, batch in zip(STEPS, (first, second, first), strict=True):
                cpu0, t0 = server.cpu_seconds(), time.perf_counter()
                for q in batch:
                    r = c.post("/v1/chat", json={"question": q})
                    if r.status_code != 200:
                        raise RuntimeError(f"/v1/chat answered {r.status_code}: {r.text[:200]}")
                out[step] = (1000 * (server.cpu_seconds() - cpu0) / n, 1000 * (time.perf_counter() - t0) / n)
                print(f"[restart] run {seed}: {step}: {out[step][0]:.1f} CPU-ms, {out[step][1]:.0f} ms", flush=True)
    finally:
        server.stop()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, required=True, help="DOCQA_HOME with the KB (bench/load.py builds one)")
    ap.add_argument("--kb", default="load")
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPORTS / "restart_cost.md")
    args = ap.parse_args(argv)
    questions = [q.text for ds in (Dataset.CMRC, Dataset.DRCD) for q in load_squad(ds)[1]]
    runs = [one_run(args.home, args.kb, questions, args.n, seed) for seed in range(1, args.runs + 1)]
    med = {s: (statistics.median(r[s][0] for r in runs), statistics.median(r[s][1] for r in runs)) for s in STEPS}
    base = med[STEPS[1]][0]
    rows = [[s, f"{cpu:.1f}", f"{cpu / base:.2f}x", f"{wall:.0f}"] for s, (cpu, wall) in med.items()]
    body = "\n".join([
        f"Measured by `python bench/restart_cost.py --home {args.home} --kb {args.kb} --n {args.n} --runs "
        f"{args.runs}` on {machine_line()}.",
        "",
        f"One client on `/v1/chat` (extractive, default compliance), a fresh `docqa serve` per run; {args.n} CMRC/DRCD "
        "questions per step; medians of the runs.",
        "",
        md_table(["step", "server CPU-ms per answer", "vs warm, unseen", "wall ms per answer"], rows),
        "",
        "The first row against the second is what a restart costs an answer; the third is what question-level "
        "caches save (bench/load.py's later phases are mostly that).",
    ])
    write_report(args.out, "What a restart costs an answer", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
