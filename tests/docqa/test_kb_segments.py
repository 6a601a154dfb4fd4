"""Commits that cost what they change (issue #24, cliff 2): a generation is a list of immutable segments
shared with the one before by hard links; a commit adds one segment for its changes, hides replaced or
deleted documents of older segments with tombstones, merges small segments by a size rule, and `docqa
compact` merges all. Real files ingested, real KB folders inspected."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docqa.kb import KBWriter, KnowledgeBase
from docqa.kb.manifest import read_manifest
from docqa.kb.store import MAX_SEGMENTS
from docqa.search import search
from docqa.settings import load_settings
from ingest.pipeline import delete_documents, ingest_paths

MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the smallest encoder: these tests are about files
KB = "seg"
RULE = "第{n}条 编号为 {code} 的项目由{dept}统一审批，审批结果在五个工作日内书面通知申请人。"
DEPTS = ["财务部", "人事部", "法务部", "审计部", "采购部", "信息部"]

pytestmark = [pytest.mark.usefixtures("embed_model"), pytest.mark.slow]


def _settings(home: Path):
    return load_settings(home=home, embed_model=MODEL, embed_backend="torch", keyphrases=0)


def _doc(folder: Path, name: str, code: str, articles: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n\n".join(RULE.format(n=i + 1, code=f"{code}{i}", dept=DEPTS[i % len(DEPTS)])
                                for i in range(articles)), encoding="utf-8")
    return path


def _gdir(settings, generation: int | None = None) -> Path:
    root = settings.home / KB
    return root / f"gen-{generation or read_manifest(root)['generation']:06d}"


def _segments(settings) -> list[str]:
    return read_manifest(settings.home / KB)["segments"]


def _finds(settings, token: str, mode: str = "keyword") -> bool:
    kb = KnowledgeBase.open(KB, settings)
    try:
        return any(token in h.text for h in search(kb, token, 5, mode=mode))
    finally:
        kb.close()


def _consistent(settings) -> dict:
    """Open the current generation the way a server does and check its parts agree; its counts."""
    kb = KnowledgeBase.open(KB, settings)
    try:
        counts = kb.store.counts()
        assert len(kb.vectors) == len(kb.lexical) == counts["units"] == kb.manifest["counts"]["units"]
        return counts
    finally:
        kb.close()


@pytest.fixture
def base(tmp_path: Path):
    """A KB whose first commit holds one large document (150 articles)."""
    settings = _settings(tmp_path / "home")
    ingest_paths([_doc(tmp_path / "docs", "base.txt", "BASE", articles=150)], KB, settings, progress=False)
    return settings, tmp_path / "docs"


def test_a_one_document_commit_shares_the_big_segment_and_writes_only_its_own(base) -> None:
    settings, docs = base
    (first,) = _segments(settings)
    g1 = _gdir(settings)
    report = ingest_paths([_doc(docs, "small.txt", "SMALL")], KB, settings, progress=False)
    assert report.committed and report.added == 1
    g2 = _gdir(settings)
    assert _segments(settings) == [first, "s000002"], "the small change is its own segment, the big one kept"
    for end in (".sqlite", ".faiss"):  # the same file under two names, not a copy
        assert os.stat(g1 / "segments" / f"{first}{end}").st_ino == os.stat(g2 / "segments" / f"{first}{end}").st_ino
    new = sqlite3.connect(g2 / "segments" / "s000002.sqlite")
    assert new.execute("SELECT COUNT(*) FROM docs").fetchone()[0] == 1
    big = os.path.getsize(g2 / "segments" / f"{first}.sqlite") + os.path.getsize(g2 / "segments" / f"{first}.faiss")
    small = os.path.getsize(g2 / "segments" / "s000002.sqlite") + os.path.getsize(g2 / "segments" / "s000002.faiss")
    assert small < big / 4, (small, big)
    assert _consistent(settings) == {"docs": 2, "units": _consistent(settings)["units"]}
    assert _finds(settings, "SMALL0") and _finds(settings, "BASE39")


def test_a_replaced_document_in_an_older_segment_is_hidden_everywhere(base) -> None:
    settings, docs = base
    ingest_paths([_doc(docs, "small.txt", "SMALL")], KB, settings, progress=False)
    units_before = _consistent(settings)["units"]
    path = _doc(docs, "base.txt", "BASE", articles=150)
    text = path.read_text(encoding="utf-8").replace("BASE7", "CHANGED7")
    path.write_text(text, encoding="utf-8")
    report = ingest_paths([path], KB, settings, progress=False)
    assert report.updated == 1
    counts = _consistent(settings)
    assert counts["docs"] == 2 and counts["units"] == units_before
    kb = KnowledgeBase.open(KB, settings)
    try:
        stored = [u.text for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id)]
        assert sum("CHANGED7" in t for t in stored) >= 1 and not any("第8条 编号为 BASE7 " in t for t in stored)
        # the old rows are still on disk in the older segment, but no search sees them
        for mode in ("dense", "keyword", "hybrid"):
            hits = search(kb, "编号为 BASE7 的项目", 20, mode=mode)
            assert all(h.unit_id in {u for d in kb.store.iter_docs() for u in
                                     [x.unit_id for x in kb.store.units_of_doc(d.doc_id)]} for h in hits), mode
            assert not any("第8条 编号为 BASE7 " in h.text for h in hits), mode
    finally:
        kb.close()


def test_deleted_documents_leave_tombstones_and_compact_drops_their_rows(base, tmp_path: Path) -> None:
    settings, docs = base
    ingest_paths([_doc(docs, "small.txt", "SMALL")], KB, settings, progress=False)
    small_units = _consistent(settings)["units"]
    deleted, missing = delete_documents(KB, [str(docs / "base.txt")], settings)
    assert len(deleted) == 1 and not missing
    counts = _consistent(settings)
    assert counts["docs"] == 1 and counts["units"] < small_units
    assert not _finds(settings, "BASE3", "hybrid") and _finds(settings, "SMALL0")
    env = {**os.environ, "DOCQA_HOME": str(settings.home), "DOCQA_EMBED_MODEL": MODEL, "DOCQA_EMBED_BACKEND": "torch",
           "DOCQA_KEYPHRASES": "0", "HF_HUB_OFFLINE": "1"}
    script = Path(sys.executable).with_name("docqa")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]
    proc = subprocess.run([*cmd, "compact", "--kb", KB], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "merged into one" in proc.stdout and f"{counts['units']} units" in proc.stdout, proc.stdout
    (only,) = _segments(settings)
    seg = sqlite3.connect(_gdir(settings) / "segments" / f"{only}.sqlite")
    assert seg.execute("SELECT COUNT(*) FROM units").fetchone()[0] == counts["units"], "dead rows are gone"
    assert seg.execute("SELECT COUNT(*) FROM deleted_docs").fetchone()[0] == 0
    assert _consistent(settings) == counts and _finds(settings, "SMALL0")


def test_many_small_commits_keep_few_segments_and_every_document(base) -> None:
    settings, docs = base
    counts_seen = []
    for i in range(12):
        ingest_paths([_doc(docs, f"n{i}.txt", f"NOTE{i}X")], KB, settings, progress=False)
        counts_seen.append(len(_segments(settings)))
        rows = [sqlite3.connect(_gdir(settings) / "segments" / f"{s}.sqlite").execute(
            "SELECT COUNT(*) FROM units").fetchone()[0] for s in _segments(settings)]
        assert rows == sorted(rows, reverse=True), f"segments should shrink from the oldest: {rows}"
    assert max(counts_seen) <= min(MAX_SEGMENTS, 5), counts_seen
    assert _consistent(settings)["docs"] == 13
    assert all(_finds(settings, f"NOTE{i}X0") for i in (0, 5, 11)) and _finds(settings, "BASE20")


def test_a_reader_on_the_old_generation_keeps_answering_across_commits_and_merges(base) -> None:
    settings, docs = base
    old = KnowledgeBase.open(KB, settings)
    try:
        before = [h.unit_id for h in search(old, "编号为 BASE3 的项目", 5, mode="hybrid")]
        for i in range(4):  # commits that merge segments the old view still reads
            ingest_paths([_doc(docs, f"m{i}.txt", f"MERGE{i}X")], KB, settings, progress=False)
        delete_documents(KB, [str(docs / "base.txt")], settings)
        assert [h.unit_id for h in search(old, "编号为 BASE3 的项目", 5, mode="hybrid")] == before
    finally:
        old.close()
    assert not _finds(settings, "BASE3", "hybrid")


def test_a_kb_written_before_segments_is_read_and_its_store_becomes_the_first_segment(base) -> None:
    """A format-1 generation (one store.sqlite and vectors.faiss, no deleted_docs table): made from a
    one-segment generation the way docqa before segments wrote it."""
    settings, docs = base
    root, g1 = settings.home / KB, _gdir(settings)
    (name,) = _segments(settings)
    (g1 / "segments" / f"{name}.sqlite").rename(g1 / "store.sqlite")
    (g1 / "segments" / f"{name}.faiss").rename(g1 / "vectors.faiss")
    (g1 / "segments").rmdir()
    with sqlite3.connect(g1 / "store.sqlite") as c:
        c.execute("DROP TABLE deleted_docs")
    c.close()
    for path in (root / "manifest.json", g1 / "generation.json"):
        m = json.loads(path.read_text(encoding="utf-8"))
        m.pop("segments")
        m["format_version"] = 1
        path.write_text(json.dumps(m), encoding="utf-8")
    assert _finds(settings, "BASE5", "hybrid")
    units = _consistent(settings)["units"]
    ingest_paths([_doc(docs, "later.txt", "LATER")], KB, settings, progress=False)
    assert _segments(settings) == ["s000001", "s000002"]
    assert os.stat(g1 / "store.sqlite").st_ino == os.stat(_gdir(settings) / "segments" / "s000001.sqlite").st_ino
    assert _consistent(settings)["units"] > units and _finds(settings, "LATER0") and _finds(settings, "BASE5")
    with KBWriter(KB, settings, create=False) as w:
        w.compact()
        w.commit()
    kb = KnowledgeBase.open(KB, settings)
    try:
        ids = np.array([h.unit_id for h in search(kb, "编号为 LATER0", 3, mode="dense")])
        assert len(ids) and len(kb.vectors) == kb.store.counts()["units"]
    finally:
        kb.close()
