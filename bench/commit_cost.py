"""What a one-document commit costs as a KB grows (#24, cliff 2): old code vs this checkout, same run.

A big KB is built once per code version (``--before``: a commit checked out in a temporary git worktree,
run with this virtualenv; new: this checkout) from a source KB built by `docqa ingest` (real text and
its real vectors, e.g. bench/load.py's 20k-unit KB): its documents are added ``--copies`` times, each copy
with its doc id and source marked ``#copyK`` (copies, not new text: say so when quoting the figures).
Evidence vectors are off in the big KBs (what is measured is the store, the vector index and tantivy).

Then, alternating old and new ``--repeats`` times, `docqa ingest` of a fresh one-paragraph file runs as a
child process into the big KB and into an empty KB: wall seconds, CPU seconds (the child's rusage), the
bytes the commit wrote (files of the new generation not shared by a hard link with the one before) and the
size of one generation. The aims: <= 0.5 s more than into an empty KB, bytes written <= 5% of a
generation, disk during the commit <= 1.3x one generation.

    python bench/commit_cost.py --source-home /tmp/loadhome/h --source-kb load --copies 15 [--before 3c85663]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, REPORTS, machine_line, md_table, write_report  # noqa: E402

BEFORE = "3c85663"  # the last commit that copied the store and wrote the whole FAISS index per commit
_CLI = "import sys; sys.argv[0] = 'docqa'; from service.cli import main; sys.exit(main())"
_PARAGRAPH = "第{n}条 编号为 COMMIT{n}X 的变更申请由信息部统一审批，审批结果在五个工作日内书面通知申请人。"

# Run as `python -c` with PYTHONPATH=<code>, so the KB is written by that version's writer.
_BUILD = r"""
import json, sys, time
from pathlib import Path
from docqa.kb import KBWriter, KnowledgeBase
from docqa.settings import load_settings
import numpy as np
src_home, src_kb, home, copies = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
jitter, kind, evidence = float(sys.argv[5]), sys.argv[6], sys.argv[7] == "1"
rng = np.random.default_rng(0)
src = KnowledgeBase.open(src_kb, load_settings(home=Path(src_home)))
docs = list(src.store.iter_docs())
vector = getattr(src.vectors, "reconstruct", None) or src.vectors.index.reconstruct  # new code / old code
settings = load_settings(home=Path(home), evidence_vectors=evidence, keyphrases=0, vector_index=kind)
stored = {}


def evidence_of(u):  # the source's stored evidence vectors of segment u (sentences, then clauses), once per unit
    from docqa.kb.evidence import claim_clauses
    from docqa.text.evidence import evidence_sentences

    if u.unit_id not in stored:
        known = src.evidence.sentence_vectors([(u.unit_id, u.text)])
        sents = evidence_sentences(u.text)
        texts = sents + claim_clauses(sents)
        stored[u.unit_id] = np.stack([known[t] for t in texts]) if texts and all(t in known for t in texts) else None
    return stored[u.unit_id]
t0 = time.time()
with KBWriter("big", settings) as w:
    for k in range(copies):
        batch = []
        for doc in docs:
            base = doc.doc_id.split("#copy")[0]
            units = src.store.units_of_doc(base)
            ords = {u.unit_id: u.ord for u in units}
            for u in units:
                u.parent_ord = ords.get(u.parent_id)
                if evidence and u.level.value == "segment":
                    u.evidence = evidence_of(u)
                v = vector(u.unit_id)
                if k and jitter:  # copies as distinct points (an ANN index over exact duplicates is not a KB)
                    v = v + rng.normal(0, jitter, v.shape).astype(np.float32)
                    v /= np.linalg.norm(v)
                u.vector = v
                u.doc_id = f"{base}#copy{k}"
            doc.doc_id, doc.source = f"{base}#copy{k}", f"{doc.source.split('#copy')[0]}#copy{k}"
            batch.append((doc, units))
        w.put_documents(batch)
        print(f"[build] copy {k + 1}/{copies}", file=sys.stderr, flush=True)
    counts = w.commit()
print(json.dumps({"counts": counts, "seconds": time.time() - t0}))
"""


def build(code: Path, source_home: Path, source_kb: str, home: Path, copies: int, *, jitter: float = 0.0,
          kind: str = "flat_fp16", evidence: bool = False) -> dict:
    """KB ``big`` in ``home``: the documents of ``source_kb`` ``copies`` times, written by the code in ``code``
    (``jitter``: the std of noise added to the vectors of copies, renormalised; ``kind``: vector_index;
    ``evidence``: store evidence vectors, the source's (its own stored ones: nothing is embedded))."""
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", "DOCQA_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(source_home), source_kb, str(home), str(copies),
                           str(jitter), kind, "1" if evidence else "0"], cwd=code, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the big KB failed in {code}: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _generation(home: Path, kb: str) -> Path:
    m = json.loads((home / kb / "manifest.json").read_text(encoding="utf-8"))
    return home / kb / f"gen-{m['generation']:06d}"


def _sizes(gdir: Path) -> tuple[int, int]:
    """(bytes of the generation's files, bytes of those not shared with another generation)."""
    total = own = 0
    for f in gdir.rglob("*"):
        if f.is_file():
            st = f.stat()
            total += st.st_size
            own += st.st_size if st.st_nlink == 1 else 0
    return total, own


def commit_once(code: Path, home: Path, kb: str, doc: Path) -> dict:
    """One `docqa ingest` of ``doc`` into ``kb`` with the code in ``code``, as a child process."""
    env = {**os.environ, "DOCQA_HOME": str(home), "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1",
           "DOCQA_EVIDENCE_VECTORS": "false", "DOCQA_KEYPHRASES": "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CLI, "ingest", str(doc), "--kb", kb, "--no-progress"], cwd=code,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"docqa ingest failed ({proc.returncode}) in {code}: {proc.stderr[-800:]}")
    total, own = _sizes(_generation(home, kb))
    return {"wall_s": wall, "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "written_mb": own / 2**20, "generation_mb": total / 2**20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-home", type=Path, required=True)
    ap.add_argument("--source-kb", default="load")
    ap.add_argument("--copies", type=int, default=15)
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="folder for the KBs (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=REPORTS / "commit_cost.md")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="docqa-commit-"))
    tree = work / "before"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.before], check=True,
                       capture_output=True)
    codes = {"old": tree, "new": REPO}
    built = {}
    try:
        for name, code in codes.items():
            home = work / f"home-{name}"
            if not (home / "big" / "manifest.json").is_file():
                shutil.rmtree(home, ignore_errors=True)
                built[name] = build(code, args.source_home, args.source_kb, home, args.copies)
                print(f"[commit] {name}: built {built[name]['counts']} in {built[name]['seconds']:.0f}s", flush=True)
        rows: dict[tuple[str, str], list[dict]] = {}
        n = 0
        for r in range(args.repeats):
            for name, code in codes.items():
                for target in ("big", "empty"):
                    n += 1
                    doc = work / f"docs-{n}" / f"change-{n}.txt"
                    doc.parent.mkdir(parents=True, exist_ok=True)
                    doc.write_text(_PARAGRAPH.format(n=n), encoding="utf-8")
                    home = work / f"home-{name}" if target == "big" else work / f"empty-{name}-{r}"
                    row = commit_once(code, home, "big" if target == "big" else "empty", doc)
                    rows.setdefault((name, target), []).append(row)
                    print(f"[commit] repeat {r + 1} {name} {target}: {row}", flush=True)
        units = json.loads((work / "home-new" / "big" / "manifest.json").read_text())["counts"]["units"]
        write(args, rows, units)
    finally:
        if args.work is None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    return 0


def write(args, rows: dict, units: int) -> None:
    med = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in rows.items()}
    table = []
    for name in ("old", "new"):
        big, empty = med[(name, "big")], med[(name, "empty")]
        table.append([name, f"{big['wall_s']:.2f}", f"{empty['wall_s']:.2f}", f"{big['wall_s'] - empty['wall_s']:+.2f}",
                      f"{big['cpu_s']:.1f}", f"{empty['cpu_s']:.1f}", f"{big['written_mb']:.2f}",
                      f"{big['generation_mb']:.0f}", f"{100 * big['written_mb'] / big['generation_mb']:.2f}%",
                      f"{1 + big['written_mb'] / big['generation_mb']:.3f}x"])
    body = [
        f"Measured by `python bench/commit_cost.py --source-home {args.source_home} --source-kb {args.source_kb} "
        f"--copies {args.copies} --before {args.before} --repeats {args.repeats}` on {machine_line()}.",
        "",
        f"The big KB: {units:,} units, the documents of KB `{args.source_kb}` (built by `docqa ingest` from "
        f"CMRC/DRCD text) added {args.copies} times; **copies, marked `#copyK` in their doc ids**, not new "
        "text. Each commit is `docqa ingest` of a new one-paragraph file as a child process (start-up and "
        "models included, as a user pays them); medians of the repeats, old and new alternating.",
        "",
        md_table(["code", "into the big KB: wall s", "into an empty KB: wall s", "difference", "CPU s (big)",
                  "CPU s (empty)", "MB written (big)", "MB of one generation", "written / generation",
                  "disk during the commit"], table),
        "",
        "MB written: the new generation's files not shared by a hard link with the one before (the old code "
        "copies the SQLite store and writes the whole FAISS index; tantivy's segments were linked already). "
        "Disk during the commit: (one generation + what the commit wrote) / one generation.",
        "",
        "Aims (#24): <= 0.5 s more than into an empty KB; written <= 5% of a generation; disk <= 1.3x.",
    ]
    write_report(args.out, "A one-document commit into a big KB, old code vs this checkout", "\n".join(body))
    args.out.with_suffix(".json").write_text(json.dumps({f"{a}/{b}": v for (a, b), v in rows.items()}, indent=1))
    print("\n".join(body))


if __name__ == "__main__":
    sys.exit(main())
