"""Embedding fine-tuning gain on legal (CAIL2019) and encyclopedic (DRCD) Chinese QA.

A KB is built from part of the CAIL2019 dev contexts and DRCD dev paragraphs with the default
embedding model (multilingual-e5-small), which is also the base that is fine-tuned. Questions are
split into train and held-out; the train questions, each paired with the segment that holds its
answer plus one hard negative mined from the KB's hybrid index, train the model with
`finetune.embed` (with --kb-pairs, also the KB's own pseudo-query pairs,
`finetune.embed.data.pairs_from_kb`, as `docqa finetune embed --kb` makes them). We report, on the
held-out questions:
  * hit@k (any unit holding the answer in the top k: the article, its segment or sentence, as the
    pipeline maps each to the same passage), recall@k, MRR@10, NDCG@10 of the embedder alone over
    every unit of the KB (IR evaluator);
  * whole-pipeline hybrid recall@5 (docqa.search, dense + BM25 + RRF) before and after
    `reindex --embed-model` with the tuned model (a hit counts when a returned passage holds the answer).
Run: python bench/finetune_embed.py [--docs 300] [--train 1000] [--heldout 400]
Writes bench/reports/finetune_embed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_squad_like(path: Path, n_docs: int, prefix: str) -> tuple[list[dict], list[dict]]:
    """(documents, questions) from a SQuAD-format file: first ``n_docs`` paragraphs, span answers only."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    docs, qas = [], []
    for art in data:
        for para in art["paragraphs"]:
            if len(docs) >= n_docs:
                return docs, qas
            doc_id = f"{prefix}{len(docs)}"
            docs.append({"id": doc_id, "title": art.get("title", ""), "text": para["context"]})
            for qa in para["qas"]:
                ans = [a["text"] for a in qa.get("answers", []) if a.get("answer_start", -1) >= 0 and a["text"]]
                if ans and qa.get("is_impossible") not in (True, "true"):
                    qas.append({"question": qa["question"], "answer": ans[0], "doc_id": doc_id})
    return docs, qas


def gold_units(kb, q: dict) -> list:
    """The units of the question's document that hold its answer, its segment first (the training positive)."""
    units = [u for u in kb.store.units_of_doc(q["doc_id"]) if q["answer"] in u.text]
    return sorted(units, key=lambda u: u.level.value != "segment")


def split_questions(kb, qas: list[dict], n_heldout: int, n_train: int) -> tuple[dict, list[dict], list[dict]]:
    """(gold units by id(question), held-out, train): questions whose answer a unit holds, shuffled once
    (seed 0), the first ``n_heldout`` held out and the next ``n_train`` for training."""
    golds = {id(q): gold_units(kb, q) for q in qas}
    kept = [q for q in qas if golds[id(q)]]
    random.Random(0).shuffle(kept)
    return golds, kept[:n_heldout], kept[n_heldout:n_heldout + n_train]


def pipeline_metrics(kb, qas: list[dict], mode: str) -> dict[str, float]:
    """recall@1/5/10 and MRR@10 of ``docqa.search``: a hit is a returned passage of the question's
    document that holds the answer."""
    from bench.common import mrr_at, recall_at
    from docqa.search import search

    ranks = []
    for q in qas:
        hits = search(kb, q["question"], k=10, mode=mode)
        ranks.append(next((i for i, h in enumerate(hits, 1) if h.doc_id == q["doc_id"] and q["answer"] in h.text),
                          None))
    return {**{f"recall@{k}": recall_at(ranks, k) for k in (1, 5, 10)}, "mrr@10": mrr_at(ranks, 10)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=300, help="paragraphs per data set")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--heldout", type=int, default=400)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--epochs", type=float, default=None, help="default: the job's (2 below 10,000 pairs)")
    ap.add_argument("--lr", type=float, default=None, help="default: the job's (1e-4 with new tokens, else 2e-5)")
    ap.add_argument("--no-extend-vocab", dest="extend_vocab", action="store_false",
                    help="do not add the corpus's [UNK] characters as new tokens")
    ap.add_argument("--kb-pairs", action="store_true", help="add the KB's own pseudo-query pairs to the questions")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"data not found at {DATA}")

    from docqa.kb import KnowledgeBase
    from docqa.settings import Settings
    from finetune.embed.data import Pair, pairs_from_kb
    from finetune.embed.mining import MiningConfig, mine_hard_negatives
    from finetune.embed.train import EmbedTrainConfig, format_table, train
    from finetune.records import write_jsonl
    from ingest.pipeline import ingest_paths, reindex

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ft-embed-"))
    d1, q1 = load_squad_like(DATA / "cail2019_cjrc" / "dev_ground_truth.json", args.docs, "cail")
    d2, q2 = load_squad_like(DATA / "drcd" / "DRCD_dev.json", args.docs, "drcd")
    write_jsonl(work / "docs.jsonl", d1 + d2)
    settings = Settings(home=work / "home")
    ingest_paths([work / "docs.jsonl"], "bench", settings, progress=False)
    kb = KnowledgeBase.open("bench", settings)
    golds, held, tr = split_questions(kb, q1 + q2, args.heldout, args.train)
    embed = kb.settings.embed
    pairs = [Pair(q["question"], [golds[id(q)][0].embed_input(embed)],
                  section=(q["doc_id"], tuple(golds[id(q)][0].heading_path))) for q in tr]
    eval_pairs = [Pair(q["question"], [u.embed_input(embed) for u in golds[id(q)]]) for q in held]
    corpus = [u.embed_input(embed) for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id)]
    n_questions = len(pairs)
    if args.kb_pairs:
        pairs += pairs_from_kb(kb)
    n_kb = len(pairs) - n_questions
    print(f"KB: {len(d1) + len(d2)} docs, {len(corpus)} units; {len(pairs)} train / {len(eval_pairs)} held-out")
    t_mine = time.perf_counter()
    pairs = mine_hard_negatives(kb, pairs, MiningConfig(rank_lo=10, rank_hi=100, per_query=1))
    t_mine = time.perf_counter() - t_mine
    n_neg = sum(bool(p.neg) for p in pairs)
    pairs = [p for p in pairs if p.neg]  # the negative column must be on every row
    before = {m: pipeline_metrics(kb, held, m) for m in ("keyword", "dense", "hybrid")}
    out = work / "tuned"
    res = train(EmbedTrainConfig(base_model=settings.embed_model, output_dir=str(out), batch_size=32,
                                 epochs=args.epochs, learning_rate=args.lr, max_seq_length=args.max_seq_length,
                                 extend_vocab=args.extend_vocab, progress=False), pairs, eval_pairs, corpus)
    kb.close()
    reindex("bench", settings, {"embed_model": str(out)}, progress=False)
    kb2 = KnowledgeBase.open("bench", settings)
    after = {m: pipeline_metrics(kb2, held, m) for m in ("dense", "hybrid")}
    manifest_model = kb2.manifest.get("build", {}).get("embed_model")
    total = time.perf_counter() - t0
    lines = [
        f"# Embedding fine-tuning ({settings.embed_model} -> tuned), CAIL2019 dev + DRCD dev", "",
        f"KB: {len(d1)} CAIL2019 + {len(d2)} DRCD paragraphs -> {len(corpus)} units. Train pairs: {n_questions} "
        f"questions (positive: the segment holding the answer) + {n_kb}"
        f" KB pseudo-query pairs; hard negative mined for {n_neg} (ranks 11-100, {t_mine:.0f}s), "
        f"{len(pairs)} kept. Held-out questions: {len(eval_pairs)} (same documents, unseen questions); "
        "relevant = every unit holding the answer (article, segment, sentence).", "",
        f"Training: MNRL + hard negative, batch 32, {res.epochs:g} epoch(s), lr {res.learning_rate:g}, "
        f"vocabulary extended: {args.extend_vocab} ({res.added_tokens} new tokens), max_seq_length "
        f"{args.max_seq_length} while training; {res.seconds:.0f}s incl. evaluation. Whole bench {total:.0f}s "
        "on this CPU.", "",
        "## Embedder alone, held-out questions over all KB units", "", format_table(res), "",
        "## Whole pipeline (`docqa.search`: passages after the two-level mapping), held-out questions", "",
        "| retriever, metric | base KB | reindexed with tuned model | delta |", "| --- | --- | --- | --- |",
        *(f"| {m} {k} | {before[m][k]:.4f} | {after[m][k]:.4f} | {after[m][k] - before[m][k]:+.4f} |"
          for m in after for k in before[m]),
        *(f"| keyword {k} (no embedder) | {v:.4f} | same | |" for k, v in before["keyword"].items()), "",
        f"Fusion: the KB's defaults (weighted RRF, rrf_k {kb2.settings.rrf_k}, dense weight "
        f"{kb2.settings.dense_weight:g}).", "",
        f"KB manifest after reindex records embed_model = `{Path(str(manifest_model)).name}` (tuned dir).",
    ]
    report = "\n".join(lines)
    print(report)
    (ROOT / "bench" / "reports" / "finetune_embed.md").write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
