"""The `docqa` command line as a user meets it: exit codes, one-line errors, JSON output, and a
start-up that imports nothing heavy. Subprocesses run the real console entry point; the
in-process cases call ``service.cli.main`` itself (same code, no second model load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_main

import docqa.kb.manifest as manifest_mod
from docqa.kb import KBWriter
from docqa.settings import load_settings

pytestmark = pytest.mark.slow  # left out of `make test-fast`

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "transformers", "sentence_transformers", "faiss", "tantivy", "jieba", "numpy", "peft"]


def docqa(*args: str, home: Path, extra_env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCQA_HOME": str(home), "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- start-up


def test_help_exits_zero_and_lists_the_commands(tmp_path: Path) -> None:
    r = docqa("--help", home=tmp_path)
    assert r.returncode == 0, r.stderr
    for cmd in ("ingest", "search", "delete", "docs", "ask", "serve", "kbs", "finetune"):
        assert f"  {cmd} " in r.stdout


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = ("import json, sys; import service.cli; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


# ---------------------------------------------------------------- user errors: one line, exit 2


@pytest.mark.parametrize("args", [["search", "合同", "--kb", "nope"], ["docs", "--kb", "nope"],
                                  ["delete", "x", "--kb", "nope"], ["ask", "问题", "--kb", "nope"]])
def test_unknown_kb_is_one_line(tmp_path: Path, args: list[str]) -> None:
    r = docqa(*args, home=tmp_path)
    assert r.returncode == 2
    assert one_error_line(r.stderr) == f"error: knowledge base 'nope' not found under {tmp_path}"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    r = docqa("search", "q", "--kb", "../etc", home=tmp_path)
    assert r.returncode == 2 and one_error_line(r.stderr).startswith("error: invalid KB name '../etc'")
    r = docqa("search", "q", "--kb", "x", home=tmp_path, extra_env={"DOCQA_CHUNK_MAX_TOKENS": "3"})
    assert r.returncode == 2
    assert one_error_line(r.stderr).startswith("error: invalid configuration: setting chunk_max_tokens")
    r = docqa("search", "  ", "--kb", "x", home=tmp_path)
    assert r.returncode == 2 and "the query is empty" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- a real KB through the CLI


@pytest.fixture(scope="module")
def cli_kb(tmp_path_factory: pytest.TempPathFactory, embed_model: str):
    """`docqa ingest` over two good files and three bad ones, as a subprocess."""
    root = tmp_path_factory.mktemp("cli")
    docs = root / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# 请假制度\n\n员工请事假须提前两天 bilbyfrost 申请。\n", encoding="utf-8")
    (docs / "records.jsonl").write_text(
        json.dumps({"id": "r1", "title": "Backups", "text": "Backups are kept for ninety days in vault kestrelmoor."})
        + "\n" + json.dumps({"id": "r2", "text": "访客须在前台 dingoveil 登记。"}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "corrupt.docx").write_bytes(b"this is no zip archive")
    (docs / "binary.txt").write_bytes(b"\x00\xff\x00\xfe" * 64)
    result = docqa("ingest", str(docs), "--kb", "cli", "--no-progress", home=root / "home")
    return root / "home", docs, result


def test_ingest_reports_each_failure_and_commits_the_rest(cli_kb) -> None:
    home, docs, r = cli_kb
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "3 failed" in r.stderr
    for name, why in [("empty.txt", "empty"), ("corrupt.docx", "DOCX"), ("binary.txt", "binary")]:
        line = next((ln for ln in r.stderr.splitlines() if name in ln), "")
        assert why in line, f"{name}: {r.stderr}"
    assert "committed generation 1: 3 documents" in r.stdout
    assert "documents 3 added" in r.stdout


def test_ingest_build_options_make_a_new_kb_and_refuse_to_change_an_old_one(tmp_path, monkeypatch, capsys,
                                                                            embed_model) -> None:
    """--ocr and --chunker reach the settings; a KB's chunker is changed by reindex, never silently ignored."""
    monkeypatch.setenv("DOCQA_HOME", str(tmp_path / "home"))
    doc = tmp_path / "rules.md"
    doc.write_text("# 请假制度\n\n员工请事假须提前两天申请。\n\n病假须附医院证明。\n", encoding="utf-8")
    code, _, err = run_main(monkeypatch, capsys, "ingest", str(doc), "--kb", "k", "--chunker", "nsp", "--no-progress")
    assert code == 2 and "--chunker nsp needs --nsp-model" in err and "Traceback" not in err
    code, _, err = run_main(monkeypatch, capsys, "ingest", str(doc), "--kb", "k", "--chunker", "nsp", "--nsp-model",
                            str(tmp_path / "no-such-model"), "--no-progress")
    assert code == 2 and "no-such-model does not exist" in err
    code, out, err = run_main(monkeypatch, capsys, "ingest", str(doc), "--kb", "k", "--chunker", "embedding",
                              "--ocr", "never", "--no-progress")
    assert code == 0 and "committed generation 1" in out, err
    manifest = json.loads((tmp_path / "home" / "k" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["build"]["chunker"] == "embedding"
    code, _, err = run_main(monkeypatch, capsys, "ingest", str(doc), "--kb", "k", "--chunker", "fixed", "--no-progress")
    assert code == 2 and "built with chunker 'embedding'" in err and "docqa reindex --kb k --chunker fixed" in err
    code, out, _ = run_main(monkeypatch, capsys, "ingest", str(doc), "--kb", "k", "--chunker", "embedding",
                            "--no-progress")
    assert code == 0 and "nothing to commit" in out  # the same chunker again is fine


def test_search_json_fields(cli_kb, monkeypatch, capsys) -> None:
    home, docs, _ = cli_kb
    monkeypatch.setenv("DOCQA_HOME", str(home))
    code, out, err = run_main(monkeypatch, capsys, "search", "kestrelmoor backups", "--kb", "cli", "--k", "2",
                              "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert 1 <= len(hits) <= 2
    assert {"doc_id", "source", "title", "text", "score", "unit_id"} <= set(hits[0])
    assert hits[0]["doc_id"] == "r1" and hits[0]["title"] == "Backups"
    assert hits[0]["source"] == f"{(docs / 'records.jsonl').resolve()}#r1"
    assert "kestrelmoor" in hits[0]["text"] and isinstance(hits[0]["unit_id"], int)
    assert isinstance(hits[0]["score"], float) and hits[0]["score"] > 0


def test_docs_then_delete_by_jsonl_path(cli_kb, monkeypatch, capsys) -> None:
    home, docs, _ = cli_kb
    monkeypatch.setenv("DOCQA_HOME", str(home))
    code, out, _ = run_main(monkeypatch, capsys, "docs", "--kb", "cli", "--json")
    assert code == 0 and {d["doc_id"] for d in json.loads(out)} >= {"r1", "r2"}
    code, out, err = run_main(monkeypatch, capsys, "delete", str(docs / "records.jsonl"), "nothing-here", "--kb",
                              "cli")
    assert code == 1  # one target matched nothing
    assert out.startswith("deleted 2 document(s)") and "not in cli: nothing-here" in err
    code, out, _ = run_main(monkeypatch, capsys, "docs", "--kb", "cli", "--json")
    assert [d["title"] for d in json.loads(out)] == ["请假制度"]


def test_ctrl_c_during_ingest_is_one_line_and_commits_nothing(cli_kb, monkeypatch, capsys, tmp_path) -> None:
    home, _, _ = cli_kb
    monkeypatch.setenv("DOCQA_HOME", str(home))
    real = os.replace

    def replace(src, dst, *a, **kw):  # Ctrl-C at the last moment: just before the manifest swap
        if Path(dst).name == manifest_mod.MANIFEST:
            raise KeyboardInterrupt
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(manifest_mod.os, "replace", replace)
    new = tmp_path / "late.md"
    new.write_text("# 迟到\n\n迟到三次 wallabyhush 扣款。\n", encoding="utf-8")
    before = json.loads((home / "cli" / "manifest.json").read_text())["generation"]
    code, out, err = run_main(monkeypatch, capsys, "ingest", str(new), "--kb", "cli", "--no-progress")
    assert code == 130
    assert one_error_line(err) == "interrupted: nothing was committed; knowledge base 'cli' is as it was before"
    assert json.loads((home / "cli" / "manifest.json").read_text())["generation"] == before


def test_second_writer_is_refused_with_one_line(cli_kb, tmp_path) -> None:
    home, docs, _ = cli_kb
    with KBWriter("cli", load_settings(home=home), create=False):
        r = docqa("ingest", str(docs / "leave.md"), "--kb", "cli", home=home)
    assert r.returncode == 2
    assert "is being written by another process" in one_error_line(r.stderr)
