"""The verdict at the end of every fine-tuning job (finetune/verdict.py): before/after JSON beside the
model, exit status 3 and the output removed when the tuned model is worse, kept under --keep-worse."""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import run_main
from test_llm_lora import sft_file, tiny_llm  # noqa: F401 - fixtures

from finetune.verdict import EXIT_WORSE, FILE, settle, snapshot

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_a_worse_model_is_removed_but_what_was_there_before_stays(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    existed = snapshot(out)
    (out / "model.safetensors").write_text("weights", encoding="utf-8")
    (out / "tokenizer").mkdir()
    v = settle("embed", out, {"mrr@10": 0.61, "hit@5": 0.8}, {"mrr@10": 0.58, "hit@5": 0.9}, existed=existed,
               keep_worse=False)
    assert v.worse and v.exit_code == EXIT_WORSE and not v.kept
    assert sorted(p.name for p in out.iterdir()) == sorted(["notes.txt", FILE])
    saved = json.loads((out / FILE).read_text(encoding="utf-8"))
    assert saved["worse"] and saved["before"] == 0.61 and saved["table"]["after"]["hit@5"] == 0.9
    assert "WORSE" in v.message() and "--keep-worse" in v.message()


def test_lower_is_better_nan_and_no_numbers(tmp_path):
    assert not settle("llm", tmp_path / "a", {"eval_loss": 2.0}, {"eval_loss": 1.5}, existed=None,
                      keep_worse=False).worse
    assert settle("llm", tmp_path / "b", {"eval_loss": 2.0}, {"eval_loss": float("nan")}, existed=None,
                  keep_worse=True).worse
    none = settle("nsp", tmp_path / "c", {}, {}, existed=None, keep_worse=False)
    assert not none.compared and none.exit_code == 0 and "no held-out numbers" in none.message()
    assert (tmp_path / f"c.{FILE}").is_file()  # the directory was never made: the JSON lands beside it


@pytest.mark.parametrize("keep", [False, True])
def test_an_llm_job_that_makes_the_model_worse_exits_3(tiny_llm, sft_file, tmp_path, monkeypatch, capsys, keep):  # noqa: F811
    out = tmp_path / "adapter"
    args = ["finetune", "llm", sft_file, "--base-model", tiny_llm, "--output", str(out), "--lr", "30",
            "--epochs", "3", "--batch-size", "4", "--grad-accum", "1", "--max-length", "128", "--rank", "8",
            "--no-gradient-checkpointing"] + (["--keep-worse"] if keep else [])
    code, stdout, err = run_main(monkeypatch, capsys, *args)
    result = json.loads(stdout[: stdout.rindex("}") + 1])
    assert code == EXIT_WORSE, (stdout, err)
    assert "WORSE than its base on held-out eval_loss" in err and "Traceback" not in err
    assert not (result["eval_loss_after"] <= result["eval_loss_before"])  # NaN or higher
    if keep:
        assert (out / "adapter_config.json").is_file() and (out / FILE).is_file()
    else:
        assert not out.exists() and json.loads((tmp_path / f"adapter.{FILE}").read_text("utf-8"))["worse"]
