"""`docqa finetune embed --kb` then `docqa reindex --embed-model`, as a user runs them (in-process CLI).

The KB's characters that the base tokenizer cannot read become new tokens, the job prints its
before/after metrics as JSON, and the re-embedded KB records the tuned model and answers with it."""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import run_main
from test_embed_train import make_tiny_st

from finetune.records import write_jsonl

pytestmark = pytest.mark.slow  # left out of `make test-fast`

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Rare characters (鲲鹏鳐鲟鳌) are [UNK] to MiniLM's vocabulary; each record holds some of them.
RECORDS = [
    ("k1", "鲲鹏条款", "鲲鹏公司的员工每年享有十五天带薪年假，需提前一周申请。"),
    ("k2", "鳐鲟规定", "鳐鲟部门的报销须在三十日内提交发票原件，逾期不予受理。"),
    ("k3", "鳌头制度", "鳌头项目的合同须经法务审核后由总经理签字方可生效。"),
    ("k4", "鲲鳐守则", "鲲鳐仓库的访客须在前台登记并由员工全程陪同。"),
    ("k5", "鹏鲟办法", "鹏鲟分部的加班费按工资的一点五倍计算，每月结算一次。"),
    ("k6", "鳌鲲细则", "鳌鲲中心的数据备份保存九十天，到期后自动删除。"),
]


def run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert "Traceback" not in err, err
    return code, out


def test_finetune_embed_from_kb_then_reindex(tmp_path, monkeypatch, capsys):
    from docqa.kb import KnowledgeBase
    from docqa.search import search
    from docqa.settings import load_settings

    base = make_tiny_st(tmp_path)
    write_jsonl(tmp_path / "docs.jsonl", [{"id": i, "title": t, "text": x} for i, t, x in RECORDS])
    monkeypatch.setenv("DOCQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCQA_EMBED_MODEL", base)
    monkeypatch.setenv("DOCQA_CHUNK_MIN_TOKENS", "0")
    code, _ = run(monkeypatch, capsys, "ingest", str(tmp_path / "docs.jsonl"), "--kb", "rare", "--no-progress")
    assert code == 0

    out_dir = tmp_path / "tuned"
    code, out = run(monkeypatch, capsys, "finetune", "embed", "--kb", "rare", "--output", str(out_dir),
                    "--batch-size", "4", "--eval-fraction", "0.34", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["added_tokens"] >= 5  # at least 鲲鹏鳐鲟鳌
    assert result["learning_rate"] == pytest.approx(1e-4)  # the default with new token rows
    assert result["epochs"] == 2 and result["train_rows"] >= 1  # few pairs: two passes
    assert set(result["before"]) == set(result["after"]) == set(result["extended"]) >= {"hit@5", "mrr@10"}
    assert (out_dir / "finetune_metrics.json").is_file()

    code, out = run(monkeypatch, capsys, "reindex", "--kb", "rare", "--embed-model", str(out_dir), "--no-progress")
    assert code == 0, out
    kb = KnowledgeBase.open("rare", load_settings())
    try:
        assert kb.manifest["build"]["embed_model"] == str(out_dir)
        assert kb.embedder.model.tokenizer("鲲", add_special_tokens=False)["input_ids"] != \
            [kb.embedder.model.tokenizer.unk_token_id]
        hits = search(kb, "鳐鲟部门报销期限", k=3, mode="dense")
        assert hits and all(h.text for h in hits)
    finally:
        kb.close()
