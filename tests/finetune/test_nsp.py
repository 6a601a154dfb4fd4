"""`docqa finetune nsp`: pairs from real documents, a few training steps on a tiny random BERT,
and the NSP chunker loading the result exactly like a hub model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_models import make_tiny_bert

from docqa.models.nsp import NSPScorer
from docqa.settings import load_settings
from finetune.nsp import NSPConfig, build_examples, load_documents, split_docs
from ingest.chunking import chunk_document


def law_docs(shared_data: Path) -> list[Path]:
    md = shared_data / "documents_zh" / "md"
    files = sorted(p for p in md.glob("*法*.md"))[:3] if md.is_dir() else []
    if len(files) < 2:
        pytest.skip("the Chinese law Markdown files are not available")
    return files


def small_corpus(tmp_path: Path, files: list[Path], chars: int = 6000) -> Path:
    """The first ``chars`` characters of each file: enough sections for pairs, fast to train on."""
    out = tmp_path / "corpus"
    out.mkdir()
    for f in files:
        text = f.read_text(encoding="utf-8")[:chars]
        (out / f.name).write_text(text[: text.rfind("\n")], encoding="utf-8")
    return out


def test_pairs_are_adjacent_or_foreign(shared_data: Path) -> None:
    docs, failures = load_documents(None, [str(p) for p in law_docs(shared_data)])
    assert not failures and len(docs) >= 2
    cfg = NSPConfig(base="unused", out=Path("unused"), max_pairs_per_doc=40)
    rng = random.Random(0)
    train, held = split_docs(docs, cfg, rng)
    assert not {d.doc_id for d in train} & {d.doc_id for d in held}
    examples = build_examples(train, cfg, rng)
    kinds = {e.kind for e in examples}
    assert kinds <= {"positive", "easy", "hard"} and "positive" in kinds
    assert sum(e.label == 0 for e in examples) == sum(e.label == 1 for e in examples)
    def squash(t: str) -> str:
        return "".join(t.split())

    flat = [squash("".join(b.text for b in d.blocks)) for d in train]
    for e in examples[:60]:
        a, ab = squash(e.a), squash(e.a + e.b)
        src = next(t for t in flat if a in t)
        if e.kind == "positive":
            assert ab in src  # B is exactly what follows A
        else:
            assert ab not in src


def test_finetune_nsp_cli_then_chunker_loads_it(shared_data: Path, tmp_path: Path) -> None:
    from service.cli import cli

    corpus = small_corpus(tmp_path, law_docs(shared_data))
    texts = [p.read_text(encoding="utf-8") for p in corpus.iterdir()]
    base = make_tiny_bert(tmp_path / "base", [t[:3000] for t in texts], nsp_head=False)  # a plain encoder
    out = tmp_path / "nsp"
    res = CliRunner().invoke(cli, ["finetune", "nsp", "--files", str(corpus), "--base", str(base), "--out", str(out),
                                   "--steps", "3", "--batch-size", "4", "--max-length", "64"])
    assert res.exit_code == 0, res.output
    assert "held-out accuracy" in res.output
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert cfg["architectures"] == ["BertForNextSentencePrediction"]
    meta = json.loads((out / "docqa_nsp.json").read_text(encoding="utf-8"))["result"]
    assert 0.0 <= meta["accuracy"] <= 1.0 and meta["eval_examples"] > 0 and meta["train_examples"] > 0
    probs = NSPScorer(str(out), device="cpu").score_pairs(["第一条 本法适用于劳动合同。"], ["第二条 用人单位依法。"])
    assert 0.0 < float(probs[0]) < 1.0
    from ingest.loaders import load_file

    doc = load_file(next(corpus.iterdir()))[0]
    units = chunk_document(doc, load_settings(home=tmp_path, chunker="nsp", nsp_model=str(out), device="cpu"))
    body = "".join(b.text for b in doc.blocks if b.kind.value == "paragraph")
    assert units and all(u.text.replace("\n", "") in body for u in units)


def test_finetune_nsp_rejects_bad_input(tmp_path: Path) -> None:
    from service.cli import cli

    res = CliRunner().invoke(cli, ["finetune", "nsp", "--base", "x", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--kb NAME or --files" in res.output
    one = tmp_path / "one.md"
    one.write_text("# 标题\n\n只有一篇文档。第二句。\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["finetune", "nsp", "--files", str(one), "--base", "x", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "at least 2 documents" in res.output


def test_nsp_from_an_encoder_keeps_its_weights_and_adds_a_fresh_head(tmp_path: Path) -> None:
    import torch
    from transformers import BertModel

    from finetune.nsp import NSPConfig, _setup

    base = make_tiny_bert(tmp_path / "enc", ["第一条 本法适用于劳动合同。", "第二条 用人单位依法。"], nsp_head=False)
    _, net, _ = _setup(NSPConfig(base=str(base), out=tmp_path / "o", device="cpu"))
    enc = BertModel.from_pretrained(base)
    theirs = enc.state_dict()
    mine = {k.removeprefix("bert."): v for k, v in net.state_dict().items() if k.startswith("bert.")}
    shared = [k for k in theirs if k in mine]
    assert len(shared) == len(theirs) and all(torch.equal(mine[k], theirs[k]) for k in shared)
    head = [k for k in net.state_dict() if k.startswith("cls.")]
    assert head == ["cls.seq_relationship.weight", "cls.seq_relationship.bias"]


def test_a_base_that_is_not_bert_gets_one_clear_line(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from service.cli import cli

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "llama")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        text = f"# 文{i}\n\n第一句话。第二句话。第三句话。\n\n第四句话。第五句话。\n"
        (docs / f"d{i}.md").write_text(text, encoding="utf-8")
    res = CliRunner().invoke(cli, ["finetune", "nsp", "--files", str(docs), "--base", str(tmp_path / "llama"),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "is a 'llama' model, not a BERT encoder" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
