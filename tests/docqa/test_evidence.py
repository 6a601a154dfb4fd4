"""Evidence vectors stored at ingest (docqa/kb/evidence.py): each commit adds one part and links the
others, lookups give exactly the vectors the embedder gives for the sentences answering derives, a
changed text is never scored with stored vectors, unit ids are never reused, dead rows are merged away,
and a damaged or missing part only means those sentences are embedded at question time."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from docqa.kb import KnowledgeBase
from docqa.kb.evidence import MAX_PARTS, SUBDIR, claim_clauses, part_names
from docqa.kb.manifest import gen_dir
from docqa.settings import load_settings
from docqa.text.evidence import evidence_sentences
from docqa.units import Level
from ingest.pipeline import delete_documents, ingest_paths, reindex

pytestmark = [pytest.mark.usefixtures("embed_model"), pytest.mark.slow]  # slow: left out of `make test-fast`
KB = "ev"
TEXTS = [
    "第一条 为了规范差旅费报销，制定本办法。\n\n第二条 出差人员应当在返回后十个工作日内提交报销单据。",
    "第一条 员工年休假按工龄计算。\n\n第二条 工龄满一年不满十年的，年休假五天；满十年不满二十年的，年休假十天。",
    "# 访客\n\n访客进入办公区须在前台登记，并全程佩戴访客证。访客离开时交回访客证。",
    "| 项目 | 费用 |\n| --- | --- |\n| 年费 | 800元 |\n| 补卡 | 20元 |",
]


def ingest_one(settings, folder: Path, name: str, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    report = ingest_paths([folder / name], KB, settings, progress=False)
    assert report.committed and not report.failures, report.failures
    return report


def segments(kb: KnowledgeBase):
    return [u for d in kb.docs() for u in kb.store.units_of_doc(d["doc_id"]) if u.level == Level.SEGMENT]


def evidence_dir(kb: KnowledgeBase) -> Path:
    return gen_dir(kb.root, kb.generation) / SUBDIR


def assert_lookups_match_the_embedder(kb: KnowledgeBase, clauses: bool = True) -> int:
    n = 0
    for u in segments(kb):
        sents = evidence_sentences(u.text)
        got = kb.evidence.lookup(u.unit_id, sents)
        assert got is not None, u.text
        want = kb.embedder.encode_docs(sents)
        assert got.shape == want.shape and np.allclose(got, want, atol=2e-3), u.text  # float16 on disk
        if clauses:  # and the clauses the claim check reads, right after them
            known = kb.evidence.sentence_vectors([(u.unit_id, u.text)])
            texts = sents + claim_clauses(sents)
            assert set(known) == set(texts), u.text
            want = kb.embedder.encode_docs(texts)
            assert np.allclose(np.stack([known[t] for t in texts]), want, atol=2e-3), u.text
        n += 1
    return n


def test_each_commit_adds_one_part_and_links_the_ones_before(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    inodes: dict[str, int] = {}
    for i, text in enumerate(TEXTS[:3]):
        ingest_one(settings, tmp_path / "docs", f"d{i}.md", text)
        kb = KnowledgeBase.open(KB, settings)
        try:
            folder = evidence_dir(kb)
            names = part_names(folder)
            assert len(names) == i + 1
            for name, ino in inodes.items():  # the earlier parts are the same files, not copies
                assert (folder / f"{name}.vecs.f16").stat().st_ino == ino
            new = names[-1]
            inodes[new] = (folder / f"{new}.vecs.f16").stat().st_ino
            assert len(np.load(folder / f"{new}.ids.npy")) == len(segments(kb)) - sum(
                len(np.load(folder / f"{n}.ids.npy")) for n in names[:-1])  # the new part holds only what was added
            assert assert_lookups_match_the_embedder(kb) == len(segments(kb)) == len(kb.evidence)
        finally:
            kb.close()


def test_parts_written_before_clauses_are_read_and_merged_with_new_ones(tmp_path: Path) -> None:
    """A KB ingested by a docqa that stored sentence vectors only (rows of three columns): its sentences are
    still read, its clauses are encoded as before, and merged with newer parts each keeps what it has."""
    settings = load_settings(home=tmp_path / "home")
    ingest_one(settings, tmp_path / "docs", "a.md", TEXTS[1])
    kb = KnowledgeBase.open(KB, settings)
    folder = evidence_dir(kb)
    old = list(segments(kb))
    kb.close()
    for name in part_names(folder):  # rewrite as the older docqa wrote it: sentences only, three columns
        rows = np.load(folder / f"{name}.rows.npy")
        vecs = np.fromfile(folder / f"{name}.vecs.f16", dtype=np.float16).reshape(-1, 384)
        keep = np.concatenate([np.arange(r[0], r[0] + r[1]) for r in rows])
        starts = np.concatenate([[0], np.cumsum(rows[:, 1])[:-1]])
        for suffix in (".rows.npy", ".vecs.f16"):
            (folder / f"{name}{suffix}").unlink()  # a hard link shared with nothing else here, but be sure
        np.save(folder / f"{name}.rows.npy", np.stack([starts, rows[:, 1], rows[:, 2]], axis=1))
        vecs[keep].tofile(folder / f"{name}.vecs.f16")
    kb = KnowledgeBase.open(KB, settings)
    try:
        assert assert_lookups_match_the_embedder(kb, clauses=False) == len(old)
        u = next(u for u in old if claim_clauses(evidence_sentences(u.text)))
        assert set(kb.evidence.sentence_vectors([(u.unit_id, u.text)])) == set(evidence_sentences(u.text))
    finally:
        kb.close()
    ingest_one(settings, tmp_path / "docs", "b.md", TEXTS[0])
    from docqa.kb import KBWriter

    with KBWriter(KB, settings, create=False) as w:  # `docqa compact`: one part of an old and a new one
        w.compact()
        w.commit()
    kb = KnowledgeBase.open(KB, settings)
    try:
        assert len(part_names(evidence_dir(kb))) == 1
        new = [x for x in segments(kb) if x.unit_id not in {o.unit_id for o in old}]
        assert new and all(set(kb.evidence.sentence_vectors([(x.unit_id, x.text)])) ==
                           set(evidence_sentences(x.text) + claim_clauses(evidence_sentences(x.text))) for x in new)
        assert set(kb.evidence.sentence_vectors([(u.unit_id, u.text)])) == set(evidence_sentences(u.text))
        assert assert_lookups_match_the_embedder(kb, clauses=False) == len(segments(kb))
    finally:
        kb.close()


def test_a_changed_text_or_sentence_rule_is_never_scored_with_stored_vectors(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    ingest_one(settings, tmp_path / "docs", "a.md", TEXTS[1])
    kb = KnowledgeBase.open(KB, settings)
    try:
        u = next(u for u in segments(kb) if len(evidence_sentences(u.text)) > 1)
        sents = evidence_sentences(u.text)
        assert kb.evidence.lookup(u.unit_id, sents) is not None
        assert kb.evidence.lookup(u.unit_id, [*sents[:-1], sents[-1] + "。"]) is None  # other text
        assert kb.evidence.lookup(u.unit_id, ["".join(sents)]) is None  # same text, other split
        assert kb.evidence.lookup(10**9, sents) is None  # no such unit
    finally:
        kb.close()


def test_unit_ids_are_never_reused_after_a_delete(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    ingest_one(settings, tmp_path / "docs", "a.md", TEXTS[0])
    ingest_one(settings, tmp_path / "docs", "b.md", TEXTS[1])
    kb = KnowledgeBase.open(KB, settings)
    top = max(u.unit_id for d in kb.docs() for u in kb.store.units_of_doc(d["doc_id"]))
    b = next(d["doc_id"] for d in kb.docs() if d["source"].endswith("b.md"))
    kb.close()
    deleted, _ = delete_documents(KB, [b], settings)
    assert deleted == [b]
    ingest_one(settings, tmp_path / "docs", "c.md", TEXTS[2])
    kb = KnowledgeBase.open(KB, settings)
    try:
        c = next(d["doc_id"] for d in kb.docs() if d["source"].endswith("c.md"))
        assert min(u.unit_id for u in kb.store.units_of_doc(c)) > top
        assert_lookups_match_the_embedder(kb)
    finally:
        kb.close()


def test_parts_are_merged_when_too_many_or_mostly_dead(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    for i in range(MAX_PARTS + 1):
        ingest_one(settings, tmp_path / "docs", f"d{i}.md", f"# 第{i}号通知\n\n{TEXTS[i % 3]}\n\n本通知编号为{i}。")
    kb = KnowledgeBase.open(KB, settings)
    try:
        assert len(part_names(evidence_dir(kb))) <= MAX_PARTS // 2 + 1
        assert assert_lookups_match_the_embedder(kb) == len(kb.evidence)
        doomed = [d["doc_id"] for d in kb.docs()][: MAX_PARTS - 1]
    finally:
        kb.close()
    delete_documents(KB, doomed, settings)  # most of it: one part of what lives
    kb = KnowledgeBase.open(KB, settings)
    try:
        assert len(part_names(evidence_dir(kb))) == 1
        assert len(kb.evidence) == len(segments(kb)) == assert_lookups_match_the_embedder(kb)
        assert kb.manifest["evidence"]["dead"] == 0
    finally:
        kb.close()


def test_a_kb_without_evidence_or_with_a_damaged_part_still_answers(tmp_path: Path, caplog) -> None:
    from docqa.search import search
    from service.answering import answer_question

    settings = load_settings(home=tmp_path / "home")
    ingest_one(settings, tmp_path / "docs", "a.md", TEXTS[1])
    ingest_one(settings, tmp_path / "docs", "b.md", TEXTS[0])
    kb = KnowledgeBase.open(KB, settings)
    folder = evidence_dir(kb)
    kb.close()
    first = part_names(folder)[0]
    with open(folder / f"{first}.vecs.f16", "r+b") as f:  # a torn part (in this generation only)
        f.truncate(os.path.getsize(folder / f"{first}.vecs.f16") - 3)
    question = "工龄满十年不满二十年的，年休假几天？"
    with caplog.at_level(logging.WARNING, logger="docqa.kb"):
        kb = KnowledgeBase.open(KB, settings)
        try:
            assert len(kb.evidence) < len(segments(kb))
            r = answer_question(kb, question)
            assert not r.refused and "十天" in r.answer
        finally:
            kb.close()
    assert "unreadable" in caplog.text and first in caplog.text
    shutil.rmtree(folder)  # a KB ingested before evidence was stored: no folder, no record in the manifest
    man = json.loads((kb.root / "manifest.json").read_text(encoding="utf-8"))
    for key in ("evidence", "next_unit_id"):
        del man[key]
    (kb.root / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    kb = KnowledgeBase.open(KB, settings)
    try:
        assert len(kb.evidence) == 0 and search(kb, question, 3)
        assert "十天" in answer_question(kb, question).answer
    finally:
        kb.close()
    report = ingest_one(settings, tmp_path / "docs", "c.md", TEXTS[2])  # new documents get theirs at once
    assert any("docqa reindex --kb ev" in n and "evidence" in n for n in report.notices), report.notices
    kb = KnowledgeBase.open(KB, settings)
    try:
        stored = [u for u in segments(kb) if kb.evidence.lookup(u.unit_id, evidence_sentences(u.text)) is not None]
        assert stored and all("访客" in u.text for u in stored) and len(stored) < len(segments(kb))
    finally:
        kb.close()
    reindex(KB, settings, {}, progress=False)  # `docqa reindex` stores them for every segment
    kb = KnowledgeBase.open(KB, settings)
    try:
        assert assert_lookups_match_the_embedder(kb) == len(segments(kb)) == len(kb.evidence)
        assert kb.manifest["evidence"]["complete"] is True
    finally:
        kb.close()
    assert not [n for n in ingest_one(settings, tmp_path / "docs", "d.md", TEXTS[3]).notices if "evidence" in n]


@pytest.mark.parametrize("override", [{"compliance": "off"}, {"claim_check": False}])
def test_a_kb_whose_answers_are_not_claim_checked_stores_no_clauses(tmp_path: Path, override: dict) -> None:
    settings = load_settings(home=tmp_path / "home", **override)
    ingest_one(settings, tmp_path / "docs", "a.md", TEXTS[1])
    kb = KnowledgeBase.open(KB, settings)
    try:
        rows = np.concatenate([np.load(p) for p in evidence_dir(kb).glob("*.rows.npy")])
        assert rows.shape[1] == 5 and not rows[:, 3].any()  # no clause rows: ingest costs what it did
        assert assert_lookups_match_the_embedder(kb, clauses=False) == len(segments(kb))
    finally:
        kb.close()


def test_evidence_vectors_a_unit_brings_are_stored_as_given_and_the_rest_embedded(tmp_path: Path) -> None:
    """A KB copied or imported unit by unit (bench/commit_cost.py's builder) brings its segments' evidence
    vectors (``Unit.evidence``): they are stored as they are, nothing embedded for them; a unit without them,
    or with too few, has its own embedded."""
    from docqa.kb import KBWriter

    settings = load_settings(home=tmp_path / "home")
    ingest_one(settings, tmp_path / "docs", "a.md", TEXTS[1])
    src = KnowledgeBase.open(KB, settings)
    doc = next(src.store.iter_docs())
    units = src.store.units_of_doc(doc.doc_id)
    segs = [u for u in units if u.level == Level.SEGMENT]
    assert len(segs) >= 2
    texts = {u.unit_id: evidence_sentences(u.text) + claim_clauses(evidence_sentences(u.text)) for u in segs}
    known = src.evidence.sentence_vectors([(u.unit_id, u.text) for u in segs])
    ords = {u.unit_id: u.ord for u in units}
    for u in units:
        u.parent_ord = ords.get(u.parent_id)
        u.vector = src.vectors.reconstruct(u.unit_id)
    given, short = segs[0], segs[1]
    given.evidence = -np.stack([known[t] for t in texts[given.unit_id]])  # not what the encoder gives: seen if kept
    short.evidence = np.zeros((len(texts[short.unit_id]) - 1, 384), np.float32)  # too few: embedded instead
    src.close()
    doc.doc_id = doc.doc_id + "#copy"
    for u in units:
        u.doc_id = doc.doc_id
    other = load_settings(home=tmp_path / "other")
    with KBWriter("copy", other) as w:
        w.put_documents([(doc, units)])
        w.commit()
    kb = KnowledgeBase.open("copy", other)
    try:
        new = {u.text: u for u in segments(kb)}
        got = kb.evidence.sentence_vectors([(new[given.text].unit_id, given.text)])
        assert np.allclose(np.stack([got[t] for t in texts[given.unit_id]]), given.evidence, atol=2e-3)
        got = kb.evidence.sentence_vectors([(new[short.text].unit_id, short.text)])
        want = kb.embedder.encode_docs(texts[short.unit_id])
        assert np.allclose(np.stack([got[t] for t in texts[short.unit_id]]), want, atol=2e-3)
    finally:
        kb.close()
