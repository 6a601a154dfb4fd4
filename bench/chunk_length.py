"""Chunk length for the default encoder: recall@5 / MRR@10 of hybrid search by ``chunk_max_tokens``.

multilingual-e5-small reads 512 tokens (507 of text after ``<s>``, ``</s>`` and ``passage: ``);
all-MiniLM-L6-v2 read 256, which is where the old default came from. Same long documents and
questions as bench/chunking_retrieval.py (3-8 CMRC 2018 / DRCD passages per document, one sentence
per block, so paragraph breaks give nothing away); the fixed chunker at each length, the product
path otherwise (three unit levels with key info, KBWriter, hybrid search, two-level mapping). A hit
is relevant when its text contains the answer and shares a sentence with the gold passage. Also
reported: segments made and their mean length in the model's tokens (what an answer's context
costs). Run: ``python bench/chunk_length.py`` (report: bench/reports/chunk_length.md).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chunking_retrieval import build_units, evaluate  # noqa: E402
from common import REPORTS, machine_line, md_table, write_report  # noqa: E402
from segmentation import build_long_docs, load_articles, split_articles  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=12)
    ap.add_argument("--questions-per-passage", type=int, default=2)
    ap.add_argument("--lengths", default="128,256,384,507")
    ap.add_argument("--out", type=Path, default=REPORTS / "chunk_length.md")
    args = ap.parse_args(argv)
    from docqa.kb import KBWriter, KnowledgeBase
    from docqa.models.embedder import embedder_for
    from docqa.settings import Settings
    from docqa.text.sentences import split_sentences

    articles = load_articles()
    eval_keys, _ = split_articles(articles, 150)
    docs = build_long_docs(articles, eval_keys, args.docs)
    queries = [(q, a, split_sentences(p.text)) for d in docs for p in d.passages
               for q, a in p.qas[: args.questions_per_passage]]
    rows = []
    with tempfile.TemporaryDirectory() as home:
        base = Settings(home=Path(home), device="cpu")
        emb = embedder_for(base)
        for n in [int(x) for x in args.lengths.split(",")]:
            s = base.model_copy(update={"chunk_max_tokens": n})
            items, _, _ = build_units(docs, s)
            segs = [u.text for _, us in items for u in us if u.level.value == "segment"]
            name = f"len-{n}"
            with KBWriter(name, s) as w:
                w.put_documents(copy.deepcopy(items))
                w.commit()
            kb = KnowledgeBase.open(name, s)
            r5, mrr = evaluate(kb, queries)
            kb.close()
            mean = sum(emb.count_tokens(t) for t in segs) / max(len(segs), 1)
            rows.append([n, len(segs), round(mean), r5, mrr])
            print(f"chunk_max_tokens {n}: {len(segs)} segments (mean {mean:.0f} tokens) recall@5 {r5:.3f} "
                  f"MRR@10 {mrr:.3f}", flush=True)
    body = (f"{machine_line()}\n\nCommand: `python bench/chunk_length.py {' '.join(sys.argv[1:])}`\n\n"
            f"{len(docs)} long documents, {len(queries)} questions (CMRC 2018 trial + DRCD dev); embedder "
            f"{base.embed_model}; fixed chunker; hybrid search with the default fusion.\n\n"
            + md_table(["chunk_max_tokens", "segments", "mean segment tokens", "recall@5", "MRR@10"], rows))
    out = write_report(args.out, "Chunk length for multilingual-e5-small (bench/chunk_length.py)", body)
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
