"""Segmentation quality: Pk and WindowDiff of every chunker on documents with known boundaries.

Long documents are built by concatenating 3-8 passages of different topics (different Wikipedia
articles) from CMRC 2018 trial and DRCD dev; the true boundaries are the passage joins. Each
sentence is one paragraph block, so no chunker gets the answer from paragraph breaks (the case of
a PDF whose layout was lost). Chunkers compared at the same length limit:

- fixed: docqa's paragraph-packing chunker (no model);
- recursive: LangChain's RecursiveCharacterTextSplitter (bench-only baseline, the common default);
- embedding: cosine of adjacent sentence embeddings (--base, multilingual-e5-small by default), several
  thresholds;
- nsp: the model trained by ``docqa finetune nsp --base`` (the same encoder) on articles DISJOINT from
  the evaluation passages (trained here on first run, cached in bench/.cache/, git-ignored).

Pk / WindowDiff (Beeferman 1999; Pevzner & Hearst 2002): lower is better; k = half the mean
true segment length in sentences. Run: ``python bench/segmentation.py`` (report:
bench/reports/segmentation.md and segmentation.png).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, REPORTS, data_file, machine_line, md_table, write_report  # noqa: E402

CACHE = REPO / "bench" / ".cache"
DEFAULT_BASE = "intfloat/multilingual-e5-small"
MAX_TOKENS = 256
# merge neighbours whose score is above the threshold. e5's cosines are compressed: on these documents
# adjacent sentences of one passage score a median .89 (5th percentile .84), across a passage join .81
# (95th .85); all-MiniLM-L6-v2's sit far lower, hence the old 0.2-0.5 sweep. NSP: P(continuation).
EMBEDDING_THRESHOLDS = (0.8, 0.84, 0.87)
NSP_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)


@dataclass
class Passage:
    pid: str
    article: str
    text: str
    qas: list[tuple[str, str]]  # (question, answer)


@dataclass
class LongDoc:
    doc_id: str
    sentences: list[str]
    passage_of: list[int]  # index into passages, per sentence
    passages: list[Passage]


def load_articles() -> dict[str, list[Passage]]:
    """article key -> its passages, from CMRC 2018 trial and DRCD dev (SQuAD format)."""
    out: dict[str, list[Passage]] = {}
    for tag, rel in (("cmrc", "cmrc2018/squad-style-data_cmrc2018_trial.json"), ("drcd", "drcd/DRCD_dev.json")):
        for art in json.loads(data_file(rel).read_text(encoding="utf-8"))["data"]:
            key = f"{tag}:{art.get('id') or art['title']}"
            for i, para in enumerate(art["paragraphs"]):
                qas = [(q["question"], q["answers"][0]["text"]) for q in para["qas"] if q.get("answers")]
                out.setdefault(key, []).append(Passage(f"{key}:{i}", key, para["context"].strip(), qas))
    return out


def split_articles(articles: dict[str, list[Passage]], n_eval: int, seed: int = 13) -> tuple[list[str], list[str]]:
    keys = sorted(articles)
    random.Random(seed).shuffle(keys)
    return keys[:n_eval], keys[n_eval:]


def build_long_docs(articles: dict[str, list[Passage]], eval_keys: list[str], n_docs: int,
                    seed: int = 7) -> list[LongDoc]:
    """``n_docs`` documents of 3-8 passages, each passage from a different article."""
    from docqa.text.sentences import split_sentences

    rng = random.Random(seed)
    pool = [articles[k][0] for k in eval_keys]  # first passage of each evaluation article
    rng.shuffle(pool)
    docs: list[LongDoc] = []
    while len(docs) < n_docs and len(pool) >= 3:
        take = pool[: rng.randint(3, 8)]
        pool = pool[len(take):]
        sents, owner = [], []
        for j, p in enumerate(take):
            s = split_sentences(p.text)
            sents += s
            owner += [j] * len(s)
        docs.append(LongDoc(f"long{len(docs):03d}", sents, owner, take))
    return docs


def write_training_files(articles: dict[str, list[Passage]], train_keys: list[str], out: Path) -> Path:
    """Training articles as Markdown files (title heading + paragraphs) for ``docqa finetune nsp``."""
    out.mkdir(parents=True, exist_ok=True)
    for i, k in enumerate(train_keys):
        body = "\n\n".join(p.text for p in articles[k])
        (out / f"a{i:04d}.md").write_text(f"# {k}\n\n{body}\n", encoding="utf-8")
    return out


def nsp_dir(base: str) -> Path:
    return CACHE / ("nsp-" + base.rstrip("/").split("/")[-1])


def ensure_nsp_model(articles, train_keys: list[str], steps: int, base: str = DEFAULT_BASE) -> tuple[Path, str]:
    """Train the bench NSP model with the real CLI unless it is cached; returns (dir, CLI output)."""
    folder = nsp_dir(base)
    if (folder / "config.json").is_file():
        meta = json.loads((folder / "docqa_nsp.json").read_text(encoding="utf-8"))
        r = meta["result"]
        return folder, (f"(cached) held-out accuracy {r['accuracy']:.3f} (before {r['accuracy_before']:.3f}; "
                         f"{r['accuracy_by_kind']}) on {r['eval_examples']} pairs; {r['train_examples']} training "
                         f"pairs, {meta['recipe']['steps']} steps, {r['seconds']:.0f}s")
    files = write_training_files(articles, train_keys, CACHE / "nsp-train")
    cmd = [sys.executable, "-m", "service.cli", "finetune", "nsp", "--files", str(files), "--base",
           base, "--out", str(folder), "--steps", str(steps)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"docqa finetune nsp failed:\n{proc.stderr[-3000:]}")
    return folder, proc.stdout.strip().splitlines()[-1]


def to_document(d: LongDoc):
    from docqa.document import Block, Document, sha256_hex

    return Document(doc_id=d.doc_id, source=f"bench:{d.doc_id}", title="",
                    content_hash=sha256_hex("\n".join(d.sentences)), blocks=[Block(text=s) for s in d.sentences])


# --- metrics ---
def boundaries_from_chunks(sentences: list[str], chunks: list[str]) -> list[int]:
    """0/1 per sentence gap: 1 where a chunk ends between sentence i and i+1 (by character offsets)."""
    ends, pos = [], 0
    for s in sentences:
        pos += len(s)
        ends.append(pos)
    gaps = [0] * (len(sentences) - 1)
    flat = "".join(sentences)
    cursor = 0
    for c in chunks[:-1]:
        body = "".join(c.split())
        at = flat.find(body[:20], cursor) if body else -1
        if at < 0:
            continue
        cursor = at + len(body)
        i = min(range(len(ends)), key=lambda j: abs(ends[j] - cursor))  # nearest sentence end
        if i < len(gaps):
            gaps[i] = 1
    return gaps


def pk(ref: list[int], hyp: list[int], k: int) -> float:
    """Probability that two sentences k apart are wrongly judged same/different segment."""
    n = len(ref) + 1
    if n <= k:
        return 0.0
    errs = sum((sum(ref[i:i + k]) > 0) != (sum(hyp[i:i + k]) > 0) for i in range(n - k))
    return errs / (n - k)


def windowdiff(ref: list[int], hyp: list[int], k: int) -> float:
    n = len(ref) + 1
    if n <= k:
        return 0.0
    return sum(sum(ref[i:i + k]) != sum(hyp[i:i + k]) for i in range(n - k)) / (n - k)


def true_gaps(d: LongDoc) -> list[int]:
    return [int(d.passage_of[i] != d.passage_of[i + 1]) for i in range(len(d.sentences) - 1)]


class CachedScorer:
    """Wraps a scorer so one pass of scores serves every threshold and length limit."""

    def __init__(self, inner):
        self.inner, self.cache, self.seconds = inner, {}, 0.0

    def score_pairs(self, firsts, seconds):
        import numpy as np

        todo = [(a, b) for a, b in zip(firsts, seconds, strict=True) if (a, b) not in self.cache]
        if todo:
            t0 = time.perf_counter()
            vals = self.inner.score_pairs([a for a, _ in todo], [b for _, b in todo])
            self.seconds += time.perf_counter() - t0
            self.cache.update(zip(todo, vals.tolist(), strict=True))
        return np.array([self.cache[(a, b)] for a, b in zip(firsts, seconds, strict=True)], dtype=np.float32)


def chunk_texts(method: str, doc, threshold: float, max_tokens: int, scorer=None) -> list[str]:
    """Chunk texts of one document with a named method."""
    if method == "fixed":
        from ingest.chunking.fixed import chunk_blocks

        return [u.text for u in chunk_blocks(doc, max_tokens=max_tokens, min_tokens=24)]
    if method == "recursive":
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        sp = RecursiveCharacterTextSplitter(chunk_size=max_tokens, chunk_overlap=0,
                                            separators=["\n\n", "\n", "。", "！", "？", "；", "，", " ", ""])
        return sp.split_text(doc.text)
    from ingest.chunking.semantic import chunk_semantic

    return [u.text for u in chunk_semantic(doc, scorer, threshold=threshold, max_tokens=max_tokens, min_tokens=24)]


def evaluate(docs: list[LongDoc], method: str, threshold: float, max_tokens: int, scorer=None) -> dict:
    pks, wds, n_chunks = [], [], 0
    for d in docs:
        ref = true_gaps(d)
        chunks = chunk_texts(method, to_document(d), threshold, max_tokens, scorer)
        hyp = boundaries_from_chunks(d.sentences, chunks)
        k = max(2, round(len(d.sentences) / (sum(ref) + 1) / 2))
        pks.append(pk(ref, hyp, k))
        wds.append(windowdiff(ref, hyp, k))
        n_chunks += len(chunks)
    return {"pk": sum(pks) / len(pks), "wd": sum(wds) / len(wds), "chunks": n_chunks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=26)
    ap.add_argument("--eval-articles", type=int, default=150)
    ap.add_argument("--steps", type=int, default=300, help="NSP training steps if no cached model")
    ap.add_argument("--base", default=DEFAULT_BASE, help="encoder for the embedding scorer and the NSP model")
    args = ap.parse_args()
    from docqa.models.embedder import Embedder
    from docqa.models.nsp import NSPScorer
    from ingest.chunking.embedding import EmbeddingScorer

    articles = load_articles()
    eval_keys, train_keys = split_articles(articles, args.eval_articles)
    docs = build_long_docs(articles, eval_keys, args.docs)
    nsp_path, nsp_line = ensure_nsp_model(articles, train_keys, args.steps, args.base)
    n_sent = sum(len(d.sentences) for d in docs)
    print(f"{len(docs)} documents, {n_sent} sentences, {sum(len(d.passages) for d in docs)} passages; NSP: {nsp_line}")
    emb = CachedScorer(EmbeddingScorer(Embedder(args.base, device="cpu")))
    nsp = CachedScorer(NSPScorer(str(nsp_path), device="cpu"))
    rows = []
    for max_tokens in (256, 512):
        runs = [("fixed", None, 0.0), ("recursive", None, 0.0)]
        runs += [("embedding", emb, t) for t in EMBEDDING_THRESHOLDS]
        runs += [("nsp", nsp, t) for t in NSP_THRESHOLDS]
        for method, scorer, thr in runs:
            r = evaluate(docs, method if scorer is None else "semantic", thr, max_tokens, scorer)
            label = method if scorer is None else f"{method} (>{thr})"
            rows.append([max_tokens, label, r["pk"], r["wd"], r["chunks"]])
            print(f"max {max_tokens:>3}  {label:<18} Pk {r['pk']:.3f}  WindowDiff {r['wd']:.3f}  chunks {r['chunks']}")
    cost = f"scoring time on CPU: embedding {emb.seconds:.1f}s, NSP {nsp.seconds:.1f}s for {n_sent} sentences"
    print(cost)
    _report(rows, len(docs), n_sent, nsp_line, cost)


def _report(rows, n_docs: int, n_sent: int, nsp_line: str, cost: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for mt, marker in ((256, "o"), (512, "s")):
        sub = [r for r in rows if r[0] == mt]
        ax.scatter([r[2] for r in sub], [r[3] for r in sub], marker=marker, label=f"max {mt} tokens")
        for r in sub:
            ax.annotate(r[1], (r[2], r[3]), fontsize=7)
    ax.set_xlabel("Pk (lower is better)")
    ax.set_ylabel("WindowDiff (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(REPORTS / "segmentation.png", dpi=110)
    body = (f"{machine_line()}\n\n{n_docs} long documents ({n_sent} sentences) of 3-8 CMRC 2018 trial / DRCD dev "
            f"passages from different articles; one sentence per block. NSP model: {nsp_line}\n\n"
            + md_table(["max tokens", "chunker", "Pk", "WindowDiff", "chunks"], rows)
            + f"\n\n{cost}\n\n![Pk vs WindowDiff](segmentation.png)\n")
    write_report(REPORTS / "segmentation.md", "Segmentation quality (bench/segmentation.py)", body)


if __name__ == "__main__":
    main()
