"""Ingestion end to end on real files: every format, every kind of bad input, incremental
re-ingest, deletion. After every change the three stores (SQLite units, FAISS, tantivy) agree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kb_helpers import keyword_finds

from docqa.document import doc_id_for_path
from docqa.kb import KnowledgeBase
from docqa.settings import load_settings
from ingest.pipeline import delete_documents, ingest_paths

KB = "pipe"
pytestmark = pytest.mark.usefixtures("embed_model")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def make_pdf(path: Path, lines: list[str]) -> Path:
    """A minimal, valid one-page PDF with real text (Helvetica), built byte by byte."""
    content = "BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({ln}) '" for ln in lines) + " ET"
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
            "/Contents 5 0 R >>", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            f"<< /Length {len(content)} >>\nstream\n{content}\nendstream"]
    out, offsets = b"%PDF-1.4\n", []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("采购管理办法", level=1)
    d.add_paragraph("第五条 单笔金额超过 wombatgrid 限额的采购，须经采购委员会审议。")
    d.save(str(path))
    return path


def jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")


def good_corpus(folder: Path) -> dict[str, str]:
    """One real file per format; returns file name -> a token only that file contains."""
    write(folder / "rules.md", "# 考勤制度\n\n## 第一章 总则\n\n员工迟到三次视为 marmotwave 旷工一天。\n")
    write(folder / "notice.html", "<html><head><title>放假通知</title></head><body><h1>放假通知</h1>"
          "<p>国庆节 ocelotpeak 放假七天，十月八日上班。</p></body></html>")
    write(folder / "gbk.txt", "报销须在三十日内提交 ibexloom 凭证。\n\n逾期不予受理。\n", encoding="gb18030")
    make_docx(folder / "purchase.docx")
    make_pdf(folder / "manual.pdf", ["The backup job runs nightly at 02:00 under account lynxhollow.",
                                     "Restores need a ticket approved by the data owner."])
    jsonl(folder / "faq.jsonl", [{"id": "q1", "title": "年假", "text": "工作满一年享有五天 tapirglow 年假。"},
                                 {"id": "q2", "title": "病假", "text": "病假须提供医院 gibbonmist 证明。"}])
    return {"rules.md": "marmotwave", "notice.html": "ocelotpeak", "gbk.txt": "ibexloom",
            "purchase.docx": "wombatgrid", "manual.pdf": "lynxhollow", "faq.jsonl#q1": "tapirglow",
            "faq.jsonl#q2": "gibbonmist"}


def finds(settings, token: str) -> bool:
    return keyword_finds(settings, KB, token)


def assert_consistent(settings) -> dict:
    """SQLite, FAISS and tantivy hold exactly the same units; returns the KB's counts."""
    kb = KnowledgeBase.open(KB, settings)
    counts = kb.store.counts()
    assert len(kb.vectors) == counts["units"] == len(kb.lexical)
    assert sum(d["units"] for d in kb.store.list_docs()) == counts["units"]
    kb.close()
    return counts


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory):
    """The corpus ingested once per module into ``<root>/work`` and kept as ``<root>/template``."""
    root = tmp_path_factory.mktemp("pipeline")
    work = root / "work"
    tokens = good_corpus(work / "docs")
    report = ingest_paths([work / "docs"], KB, load_settings(home=work / "home"), progress=False)
    assert not report.failures, report.failures
    shutil.copytree(work, root / "template")
    return root, tokens, report


@pytest.fixture
def env(template):
    """A fresh copy of the ingested corpus and its KB at the same absolute paths (sources match)."""
    root, tokens, report = template
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(root / "template", work)
    return load_settings(home=work / "home"), work / "docs", tokens, report


def test_every_format_is_ingested_and_searchable(env) -> None:
    settings, docs, tokens, report = env
    assert (report.files, report.added, report.committed, report.generation) == (6, 7, True, 1)
    assert report.units > 0 and report.counts == assert_consistent(settings)
    for name, token in tokens.items():
        assert finds(settings, token), f"{name}: {token!r} not found"
    kb = KnowledgeBase.open(KB, settings)
    sources = {d["source"] for d in kb.store.list_docs()}
    assert str(docs.resolve() / "faq.jsonl") + "#q1" in sources and str(docs.resolve() / "rules.md") in sources
    kb.close()


def test_bad_files_are_reported_by_name_and_the_rest_is_committed(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", max_file_mb=0.01)
    docs = tmp_path / "docs"
    write(docs / "ok.md", "# 制度\n\n合格文件 narwhalbeam 的内容。\n")
    write(docs / "empty.txt", "")
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02ELF\x00" * 50)
    (docs / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    write(docs / "huge.md", "很长的文件。" * 4000)  # ~70 KiB, over the 10 KiB limit
    write(docs / "bad.jsonl", '{"id": "1", "text": "第一条"}\n{"id": 2, "text": \n')
    unsupported = write(tmp_path / "notes.xyz", "text")
    report = ingest_paths([docs, unsupported, tmp_path / "missing.md"], KB, settings, progress=False)

    reasons = {Path(f.path.split("#")[0]).name: f.reason for f in report.failures}
    assert set(reasons) == {"empty.txt", "corrupt.pdf", "binary.txt", "broken.docx", "huge.md", "bad.jsonl",
                            "notes.xyz", "missing.md"}
    assert "empty" in reasons["empty.txt"]
    assert "PDF" in reasons["corrupt.pdf"]
    assert "binary" in reasons["binary.txt"]
    assert "DOCX" in reasons["broken.docx"]
    assert "limit" in reasons["huge.md"]
    assert "line 2" in reasons["bad.jsonl"]
    assert "unsupported" in reasons["notes.xyz"]
    assert "not found" in reasons["missing.md"]
    assert report.committed and report.added == 2  # ok.md, and bad.jsonl's good record on line 1
    assert finds(settings, "narwhalbeam")
    assert assert_consistent(settings)["docs"] == 2


def test_nothing_ingestible_commits_nothing(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    report = ingest_paths([write(tmp_path / "empty.md", "")], KB, settings, progress=False)
    assert not report.committed and len(report.failures) == 1
    assert not (settings.home / KB / "manifest.json").exists()


def test_unchanged_files_write_nothing(env) -> None:
    settings, docs, _, first = env
    again = ingest_paths([docs], KB, settings, progress=False)
    assert (again.units, again.added, again.updated, again.unchanged) == (0, 0, 0, 7)
    assert not again.committed and again.generation == 1
    assert again.counts == first.counts


def test_a_changed_file_replaces_its_units(env) -> None:
    settings, docs, _, first = env
    write(docs / "rules.md", "# 考勤制度\n\n## 第一章 总则\n\n员工迟到五次扣除 pangolinrift 绩效。\n")
    report = ingest_paths([docs], KB, settings, progress=False)
    assert (report.updated, report.added, report.unchanged, report.generation) == (1, 0, 6, 2)
    assert not finds(settings, "marmotwave"), "the old version's text must be gone"
    assert finds(settings, "pangolinrift")
    counts = assert_consistent(settings)
    assert counts["docs"] == first.counts["docs"]
    kb = KnowledgeBase.open(KB, settings)
    units = kb.store.units_of_doc(doc_id_for_path(str((docs / "rules.md").resolve())))
    assert units and all("marmotwave" not in u.text for u in units)
    kb.close()


def test_jsonl_reingest_updates_adds_and_removes_records(env) -> None:
    settings, docs, _, _ = env
    jsonl(docs / "faq.jsonl", [{"id": "q1", "title": "年假", "text": "工作满一年享有十天 dugongpulse 年假。"},
                               {"id": "q3", "title": "婚假", "text": "婚假三天 caracalfern 。"}])
    report = ingest_paths([docs / "faq.jsonl"], KB, settings, progress=False)
    assert (report.updated, report.added, report.removed) == (1, 1, 1)
    assert not finds(settings, "gibbonmist") and not finds(settings, "tapirglow")
    assert finds(settings, "dugongpulse") and finds(settings, "caracalfern")
    assert assert_consistent(settings)["docs"] == 7


def test_a_record_id_used_by_another_file_is_refused(env, tmp_path: Path) -> None:
    settings, docs, _, _ = env
    other = jsonl(tmp_path / "other.jsonl", [{"id": "q1", "text": "另一个文件里的 q1 echidnasky 。"},
                                             {"id": "z9", "text": "独有记录 quollmarsh 。"}])
    report = ingest_paths([other], KB, settings, progress=False)
    assert [(Path(f.path).name, "already names another document" in f.reason) for f in report.failures] == [
        ("other.jsonl#q1", True)]
    assert report.added == 1 and finds(settings, "quollmarsh")
    assert finds(settings, "tapirglow") and not finds(settings, "echidnasky")  # the first owner is intact


@pytest.mark.parametrize("how", ["doc_id", "path", "jsonl_path", "folder"])
def test_delete(env, how: str) -> None:
    settings, docs, tokens, _ = env
    target, gone = {
        "doc_id": (doc_id_for_path(str((docs / "notice.html").resolve())), ["ocelotpeak"]),
        "path": (str(docs / "gbk.txt"), ["ibexloom"]),
        "jsonl_path": (str(docs / "faq.jsonl"), ["tapirglow", "gibbonmist"]),
        "folder": (str(docs), list(tokens.values())),
    }[how]
    deleted, missing = delete_documents(KB, [target, "no-such-doc"], settings)
    assert missing == ["no-such-doc"] and len(deleted) == {"jsonl_path": 2, "folder": 7}.get(how, 1)
    for token in tokens.values():
        assert finds(settings, token) == (token not in gone), token
    counts = assert_consistent(settings)
    assert counts["docs"] == 7 - len(deleted)


def test_delete_matches_paths_exactly(tmp_path: Path) -> None:
    """'_' and case in file names are not wildcards: deleting a_b.jsonl keeps aXb.jsonl's records."""
    settings = load_settings(home=tmp_path / "home")
    a = jsonl(tmp_path / "a_b.jsonl", [{"id": "1", "text": "记录 kiwiblaze 。"}])
    b = jsonl(tmp_path / "aXb.jsonl", [{"id": "2", "text": "记录 emuquill 。"}])
    ingest_paths([a, b], KB, settings, progress=False)
    deleted, _ = delete_documents(KB, [str(a)], settings)
    assert deleted == ["1"] and finds(settings, "emuquill") and not finds(settings, "kiwiblaze")


def test_a_symlink_loop_and_a_non_utf8_name_are_reported_per_file(tmp_path: Path) -> None:
    """Issue #9: a symlink loop used to abort the whole batch (exit 70), a non-UTF-8 file name too
    (exit 2, the file not named). Each is now one failure, named (escaped), and the rest is ingested."""
    import os

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# 值班\n\n值班表每周一 quollmarsh 发布。\n", encoding="utf-8")
    os.symlink("loop.md", docs / "loop.md")  # points at itself
    bad = os.path.join(os.fsencode(str(docs)), b"bad\xff.txt")
    with open(bad, "wb") as f:
        f.write("访客须登记。".encode())
    settings = load_settings(home=tmp_path / "home")
    report = ingest_paths([docs], "paths", settings, progress=False)
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert "symbolic link loop" in reasons.get("loop.md", ""), report.failures
    assert "bad\\xff.txt" in reasons and "not valid UTF-8" in reasons["bad\\xff.txt"], report.failures
    assert report.committed and report.added == 1
