"""Scale without cliffs (#24): what `docqa ingest` costs in memory and CPU, old code vs this checkout.

Each case runs `docqa ingest` as a fresh child process into a fresh DOCQA_HOME and reads the child's peak RSS
and CPU seconds from the kernel (``resource.getrusage(RUSAGE_CHILDREN)``, measured around each child alone).
Old (``--before``, a commit checked out in a temporary git worktree, run with this virtualenv) and new runs
alternate, ``--repeats`` times each, so both see the same machine load; the report gives the median of each.

Cases: a one-line text file (the floor: start-up, models, one commit) and examples/docs (six real documents,
~1,100 units: batching of the encoder).

    python bench/scale.py [--before 1ac1028] [--repeats 3]

The rest of #24's scale figures: bench/commit_cost.py (a one-document commit into a 310k-unit KB, old vs new)
and bench/kb_size.py (KBs of 20k to 1M units: disk, start-up, memory, search and answer latency, hnsw recall).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, REPORTS, machine_line, md_table, write_report  # noqa: E402

BEFORE = "1ac1028"  # the last commit before token-bounded batches and the torch-free encoder
_CLI = "import sys; sys.argv[0] = 'docqa'; from service.cli import main; sys.exit(main())"


def ingest_once(code: Path, paths: list[Path], home: Path) -> dict:
    """Peak RSS (MB) and CPU seconds of one `docqa ingest` of ``paths`` with the code in ``code``."""
    env = {**os.environ, "DOCQA_HOME": str(home), "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", _CLI, "ingest", *map(str, paths), "--kb", "scale"],
                          cwd=code, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"docqa ingest failed ({proc.returncode}) in {code}: {proc.stderr[-800:]}")
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: _child_peak calls this once per process
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"rss_mb": after.ru_maxrss / 1024, "cpu_s": cpu}


def _child_peak(code: Path, paths: list[Path], home: Path) -> dict:
    """``ingest_once`` in a grandchild, so the RUSAGE_CHILDREN peak belongs to this one ingest alone."""
    import json

    script = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from bench.scale import ingest_once; "
              f"from pathlib import Path; print(json.dumps(ingest_once(Path({str(code)!r}), "
              f"[Path(p) for p in {[str(p) for p in paths]!r}], Path({str(home)!r}))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPORTS / "scale.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="docqa-scale-") as tmp:
        tmp = Path(tmp)
        one = tmp / "one.txt"
        one.write_text("第一条 为了规范劳动合同，制定本法。\n", encoding="utf-8")
        cases = {"one-line file": [one], "examples/docs (6 documents)": [REPO / "examples" / "docs"]}
        tree = tmp / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.before],
                       check=True, capture_output=True)
        runs: dict[tuple[str, str], list[dict]] = {}
        try:
            for rep in range(args.repeats):
                for case, paths in cases.items():
                    for label, code in (("old", tree), ("new", REPO)):  # interleaved: same load for both
                        home = tmp / f"home-{label}-{rep}-{len(runs)}"
                        r = _child_peak(code, paths, home)
                        runs.setdefault((case, label), []).append(r)
                        print(f"[scale] {case} {label} #{rep + 1}: {r['rss_mb']:.0f} MB peak RSS, "
                              f"{r['cpu_s']:.1f} CPU-s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    rows = []
    for case in cases:
        old, new = runs[(case, "old")], runs[(case, "new")]
        med = {k: (statistics.median(r[k] for r in old), statistics.median(r[k] for r in new))
               for k in ("rss_mb", "cpu_s")}
        rows.append([case, f"{med['rss_mb'][0]:.0f}", f"{med['rss_mb'][1]:.0f}", f"{med['cpu_s'][0]:.1f}",
                     f"{med['cpu_s'][1]:.1f}"])
    table = md_table(["ingest", "peak RSS MB, old", "new", "CPU-s, old", "new"], rows)
    body = (f"Measured by `python bench/scale.py {' '.join(sys.argv[1:] if argv is None else argv)}` on "
            f"{machine_line()}; old = commit {args.before}, new = this checkout; medians of {args.repeats} "
            f"interleaved runs, each a fresh `docqa ingest` process into a fresh home.\n\n{table}\n\n"
            "Aims (#24): peak RSS <= 1 GB for a one-page file, <= 2 GB for examples/docs.\n")
    write_report(args.out, "Scale: ingest memory and CPU, old vs new", body)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
