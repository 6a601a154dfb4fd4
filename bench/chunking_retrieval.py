"""Retrieval per chunker x embed setting: recall@5 and MRR@10 on long documents, plus the cost of
chunking and keyphrase extraction as a ratio of embedding time.

Same long documents as bench/segmentation.py (3-8 CMRC 2018 / DRCD passages per document, one
sentence per block); queries are those passages' questions. A hit is relevant when its returned
(level-2) text contains the answer and shares a sentence with the gold passage. Every KB goes
through the product path (chunker -> three unit levels with key info -> KBWriter -> hybrid
search with two-level mapping and containment dedup), same embedder, same RRF fusion.
Run: ``python bench/chunking_retrieval.py`` (report: bench/reports/chunking_retrieval.md/.png).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPORTS, machine_line, md_table, mrr_at, recall_at, write_report  # noqa: E402
from segmentation import (  # noqa: E402
    build_long_docs,
    ensure_nsp_model,
    load_articles,
    split_articles,
    to_document,
)

CHUNKERS = {"fixed": {}, "embedding": {"similarity_threshold": 0.84}, "nsp": {"nsp_threshold": 0.2}}  # segmentation.md
EMBEDS = ("keyinfo", "text", "both")


def build_units(docs, settings) -> tuple[list, float, float]:
    """(document, units) per doc with the product code; (items, chunking seconds, keyinfo seconds)."""
    from ingest.chunking import chunk_document
    from ingest.chunking.levels import build_units as levels

    items, t_chunk, t_key = [], 0.0, 0.0
    for d in docs:
        doc = to_document(d)
        t0 = time.perf_counter()
        segs = chunk_document(doc, settings)
        t1 = time.perf_counter()
        items.append((doc, levels(doc, segs, settings)))
        t_chunk += t1 - t0
        t_key += time.perf_counter() - t1
    return items, t_chunk, t_key


def relevant(hit_text: str, answer: str, gold_sentences: list[str]) -> bool:
    return answer in hit_text and any(s in hit_text for s in gold_sentences)


def evaluate(kb, queries) -> tuple[float, float]:
    from docqa.search import search

    ranks = []
    for q, answer, gold in queries:
        hits = search(kb, q, k=10)
        ranks.append(next((i for i, h in enumerate(hits, 1) if relevant(h.text, answer, gold)), None))
    return recall_at(ranks, 5), mrr_at(ranks, 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=12)
    ap.add_argument("--questions-per-passage", type=int, default=2)
    args = ap.parse_args()
    from docqa.kb import KBWriter, KnowledgeBase
    from docqa.models.embedder import shared_embedder
    from docqa.settings import Chunker, EmbedInput, Settings
    from docqa.text.sentences import split_sentences

    articles = load_articles()
    eval_keys, train_keys = split_articles(articles, 150)
    docs = build_long_docs(articles, eval_keys, args.docs)
    nsp_path, _ = ensure_nsp_model(articles, train_keys, 300)
    queries = [(q, a, split_sentences(p.text)) for d in docs for p in d.passages
               for q, a in p.qas[: args.questions_per_passage]]
    print(f"{len(docs)} documents, {sum(len(d.passages) for d in docs)} passages, {len(queries)} questions")
    rows, cost_rows = [], []
    with tempfile.TemporaryDirectory() as home:
        base = Settings(home=Path(home), device="cpu", nsp_model=str(nsp_path))
        emb = shared_embedder(base.embed_model, "cpu", base.embed_batch_size)
        emb.encode_docs(["warm up"])
        for chunker, extra in CHUNKERS.items():
            s = base.model_copy(update={"chunker": Chunker(chunker), "embed": EmbedInput.TEXT, **extra})
            emb.clear_cache()  # keyphrase MMR embeds the segments; the index then reuses those vectors
            items, t_chunk, t_key = build_units(docs, s)
            seg_texts = [u.text for _, us in items for u in us if u.level.value == "segment"]
            emb.clear_cache()  # time embedding the segments cold, as if no keyphrases had been made
            t0 = time.perf_counter()
            emb.encode_docs(seg_texts)
            t_emb = time.perf_counter() - t0
            ratio = (t_chunk + t_key) / t_emb
            cost_rows.append([chunker, len(seg_texts), t_chunk, t_key, t_emb, t_chunk / t_emb, ratio])
            print(f"{chunker}: {len(seg_texts)} segments; chunking {t_chunk:.1f}s, keyinfo {t_key:.1f}s, "
                  f"embedding the segments {t_emb:.1f}s -> (chunk+keyinfo)/embed {ratio:.2f}")
            for embed in EMBEDS:
                name = f"{chunker}-{embed}"
                s_embed = s.model_copy(update={"embed": EmbedInput(embed)})
                # units carry the vectors their build made: keyinfo/both units must be built for that setting
                units = items if embed == "text" else build_units(docs, s_embed)[0]
                with KBWriter(name, s_embed) as w:
                    w.put_documents(copy.deepcopy(units))
                    w.commit()
                r5, mrr = evaluate(KnowledgeBase.open(name, base), queries)
                rows.append([chunker, embed, r5, mrr])
                print(f"  {chunker:<9} embed={embed:<7} recall@5 {r5:.3f}  MRR@10 {mrr:.3f}", flush=True)
    _report(rows, cost_rows, len(docs), len(queries), Settings().embed_model)


def _report(rows, cost_rows, n_docs: int, n_q: int, embedder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4))
    chunkers = list(CHUNKERS)
    x = np.arange(len(chunkers))
    for i, embed in enumerate(EMBEDS):
        vals = [next(r[2] for r in rows if r[0] == c and r[1] == embed) for c in chunkers]
        ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=f"embed={embed}")
    ax.set_xticks(x, chunkers)
    ax.set_ylabel("recall@5")
    ax.legend()
    fig.tight_layout()
    fig.savefig(REPORTS / "chunking_retrieval.png", dpi=110)
    body = (f"{machine_line()}\n\n{n_docs} long documents, {n_q} questions (CMRC 2018 trial + DRCD dev); embedder "
            f"{embedder}; hybrid search (dense + tantivy BM25, RRF), unit levels article+segment+sentence, "
            "two-level mapping and containment dedup.\n\n"
            + md_table(["chunker", "embed", "recall@5", "MRR@10"], rows)
            + "\n\nCost (seconds; ratio against embedding the same segments once):\n\n"
            + md_table(["chunker", "segments", "chunking s", "keyinfo s", "embed s", "chunk/embed",
                        "(chunk+keyinfo)/embed"], cost_rows)
            + "\n\n![recall@5](chunking_retrieval.png)\n")
    write_report(REPORTS / "chunking_retrieval.md", "Retrieval by chunker and embed setting "
                 "(bench/chunking_retrieval.py)", body)


if __name__ == "__main__":
    main()
