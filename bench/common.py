"""Shared helpers of the bench scripts: data paths, QA datasets, building a KB, metrics, reports.

Every KB a bench builds goes through the real ingestion path (a temporary JSONL file, one record
per passage, ingested by ``ingest.pipeline.ingest_paths``) into a temporary ``DOCQA_HOME``, so the
figures are those of the product, not of a shortcut. Data lives in ``../shared/data`` beside the
repository (CI clones the repo with ``shared/`` next to it); it is never copied into the repo.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benches never download anything
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
REPORTS = REPO / "bench" / "reports"


class Dataset(StrEnum):
    """SQuAD-format QA sets: each paragraph becomes a document, each question a query."""

    CMRC = "cmrc"  # CMRC 2018 trial, Simplified Chinese (Wikipedia)
    DRCD = "drcd"  # DRCD dev, Traditional Chinese (Wikipedia)
    SQUAD2 = "squad2"  # SQuAD 2.0 dev sample, English: shows the dense retriever's home ground


DATASET_FILES = {
    Dataset.CMRC: "cmrc2018/squad-style-data_cmrc2018_trial.json",
    Dataset.DRCD: "drcd/DRCD_dev.json",
    Dataset.SQUAD2: "squad2_dev_sample/dev-v2.0.json",
}
CAIL_FILE = "cail2019_cjrc/dev_ground_truth.json"


class DataMissing(RuntimeError):
    """The shared data folder (or one file of it) is not there."""


def data_file(rel: str) -> Path:
    path = (DATA / rel).resolve()
    if not path.is_file():
        raise DataMissing(f"{path} not found: the benches read ../shared/data beside the repository")
    return path


def iter_cail_cases(n_cases: int):
    """(case number, case name, text, questions) of the first ``n_cases`` distinct CAIL2019 dev cases."""
    raw = json.loads(data_file(CAIL_FILE).read_text(encoding="utf-8"))["data"]
    seen: set[str] = set()
    for article in raw:
        for para in article["paragraphs"]:
            text = para["context"].strip()
            if text in seen or len(seen) >= n_cases:
                continue
            seen.add(text)
            yield len(seen) - 1, para.get("casename", ""), text, para["qas"]


@dataclass
class Passage:
    pid: str
    title: str
    text: str


@dataclass
class Question:
    qid: str
    text: str
    gold: str  # pid of the passage that answers it
    answers: list[str] = field(default_factory=list)


def load_squad(dataset: Dataset, limit_questions: int | None = None) -> tuple[list[Passage], list[Question]]:
    """Passages (deduplicated by text) and answerable questions of a SQuAD-format file.

    With ``limit_questions`` the first N questions are kept, and only passages up to the last of
    them: a prefix of the file, so two runs with the same limit use exactly the same subset.
    """
    raw = json.loads(data_file(DATASET_FILES[dataset]).read_text(encoding="utf-8"))["data"]
    passages: list[Passage] = []
    by_text: dict[str, str] = {}
    questions: list[Question] = []
    for article in raw:
        for para in article["paragraphs"]:
            if limit_questions is not None and len(questions) >= limit_questions:
                return passages, questions[:limit_questions]
            text = para["context"].strip()
            pid = by_text.get(text)
            if pid is None:
                pid = f"{dataset.value}-{len(passages)}"
                by_text[text] = pid
                passages.append(Passage(pid, article.get("title", ""), text))
            for qa in para["qas"]:
                answers = [a["text"] for a in qa.get("answers", []) if a.get("text")]
                if qa.get("is_impossible") in (True, "true") or not answers:
                    continue
                questions.append(Question(qa["id"], qa["question"].strip(), pid, answers))
    if limit_questions is not None:
        questions = questions[:limit_questions]
    return passages, questions


@contextlib.contextmanager
def temp_home(prefix: str = "docqa-bench-") -> Iterator[Path]:
    """A throw-away ``DOCQA_HOME`` for the duration of a bench (restored afterwards)."""
    old = os.environ.get("DOCQA_HOME")
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        os.environ["DOCQA_HOME"] = d
        try:
            yield Path(d)
        finally:
            if old is None:
                os.environ.pop("DOCQA_HOME", None)
            else:
                os.environ["DOCQA_HOME"] = old


def write_jsonl(passages: list[Passage], path: Path) -> Path:
    """The passages as a docqa JSONL corpus: one ``{"id", "title", "text"}`` record per line."""
    with open(path, "w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps({"id": p.pid, "title": p.title, "text": p.text}, ensure_ascii=False) + "\n")
    return path


def build_kb(passages: list[Passage], name: str, settings, *, progress: bool = True):
    """Ingest ``passages`` into KB ``name`` with the real pipeline; returns (KnowledgeBase, IngestReport)."""
    from docqa.kb import KnowledgeBase
    from ingest.pipeline import ingest_paths

    with tempfile.TemporaryDirectory(prefix="docqa-corpus-") as d:
        path = write_jsonl(passages, Path(d) / f"{name}.jsonl")
        report = ingest_paths([path], name, settings, progress=progress)
    if report.failures:
        raise RuntimeError(f"ingest of {name} failed for {len(report.failures)} records: {report.failures[:3]}")
    return KnowledgeBase.open(name, settings), report


def bench_settings(**overrides):
    """Settings for a bench KB: the product defaults, CPU, home from ``DOCQA_HOME``."""
    from docqa.settings import Settings

    return Settings(**{"device": "cpu", **overrides})


# --- metrics ---
def first_hit_rank(doc_ids: list[str], gold: str) -> int | None:
    """1-based rank of the first retrieved unit from the gold passage, or None."""
    for r, d in enumerate(doc_ids, start=1):
        if d == gold:
            return r
    return None


def recall_at(ranks: list[int | None], k: int) -> float:
    """R@k here is hit@k of ``docqa eval`` (service/evaluation/metrics.py: one implementation)."""
    from service.evaluation.metrics import hit_at

    return hit_at(ranks, k)


def mrr_at(ranks: list[int | None], k: int = 10) -> float:
    from service.evaluation.metrics import mrr_at as _mrr

    return _mrr(ranks, k)


def percentiles(ms: list[float], ps: tuple[int, ...] = (50, 95, 99)) -> dict[int, float]:
    import numpy as np

    return {p: float(np.percentile(ms, p)) for p in ps} if ms else {p: float("nan") for p in ps}


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# --- reports ---
def md_table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """Where the figures were measured (they only compare within one run on one machine)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
            f"load average {load:.1f} at start, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def write_report(out: Path, title: str, body: str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# {title}\n\n{body.rstrip()}\n", encoding="utf-8")
    return out


def before_and_after(script: str, before: str) -> dict[str, list]:
    """Run ``script --run-one CODE --home HOME --result FILE`` twice, in child processes: with the code of
    commit ``before`` (checked out in a temporary git worktree) and with this checkout; the results
    (JSON lists the script writes to FILE) by "before" / "after". The script's ``--run-one`` mode puts
    CODE first on ``sys.path``, so the same measurement runs against both versions."""
    import subprocess
    import sys

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), before],
                       check=True, capture_output=True)
        try:
            for name, code in (("before", tree), ("after", REPO)):
                out = Path(tmp) / f"{name}.json"
                subprocess.run([sys.executable, script, "--run-one", str(code), "--home", str(Path(tmp) / name),
                                "--result", str(out)], check=True)
                results[name] = json.loads(out.read_text(encoding="utf-8"))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return results


def add_before_after_args(ap, before: str) -> None:
    """The options of a ``before_and_after`` script: --before, --out, and the child's hidden ones."""
    import argparse

    ap.add_argument("--before", default=before, help="commit of the old version (checked out in a git worktree)")
    ap.add_argument("--out", type=Path, default=REPORTS)
    ap.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)


def run_one_child(args, questions: Path, run_one) -> bool:
    """In the child of ``before_and_after``: ``run_one(code, questions, home)`` written to --result; True
    when this process is that child (the caller then returns)."""
    if not args.run_one:
        return False
    rows = [json.loads(x) for x in questions.read_text(encoding="utf-8").splitlines()]
    args.result.write_text(json.dumps(run_one(args.run_one, rows, args.home), ensure_ascii=False), encoding="utf-8")
    return True


def ensure_questions(path: Path, build) -> int:
    """Write ``build()``'s question dicts to ``path`` (JSONL) unless it exists; the number of questions."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in build()), encoding="utf-8")
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
