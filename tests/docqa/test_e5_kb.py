"""Knowledge bases on the default encoder, multilingual-e5-small (built by `docqa models build`).

A KB built with e5 reads Chinese by meaning (dense search alone finds the statute), is reindexed to
MiniLM and back with the model recorded in its manifest each time; chunks never exceed what the
model reads; the segment pass stores for each segment exactly the vector of its text; and a KB whose
model is gone says which model and what brings it back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docqa.kb import KnowledgeBase
from docqa.models import E5_SMALL, built_model_dir
from docqa.models.embedder import embedder_for
from docqa.search import search
from docqa.settings import load_settings
from docqa.units import Level
from ingest.pipeline import ingest_paths, reindex

pytestmark = pytest.mark.slow  # left out of `make test-fast`

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"
FILES = ["劳动合同法(2012-12-28).md", "docqa-operations-handbook.md"]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def docqa(*args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DOCQA_HOME": str(home), "HF_HUB_OFFLINE": "1", **(env or {})},
                          timeout=600)


@pytest.fixture(scope="module")
def e5_kb(tmp_path_factory, e5_model) -> Path:
    home = tmp_path_factory.mktemp("e5home")
    s = load_settings(home=home, device="cpu")
    assert s.embed_model == E5_SMALL  # the default
    rep = ingest_paths([DOCS / f for f in FILES], "e5", s, progress=False)
    assert rep.committed and not rep.failures, rep.failures
    return home


def _dense_top_title(home: Path, q: str) -> str:
    kb = KnowledgeBase.open("e5", load_settings(home=home, device="cpu"))
    try:
        return search(kb, q, k=1, mode="dense")[0].title
    finally:
        kb.close()


def test_dense_search_reads_chinese_and_reindex_round_trips(e5_kb: Path) -> None:
    q = "员工被辞退时，公司要给多少补偿？"  # paraphrase: the statute says 经济补偿 / 解除劳动合同
    assert "劳动合同法" in _dense_top_title(e5_kb, q)
    s = load_settings(home=e5_kb, device="cpu")
    reindex("e5", s, {"embed_model": MINILM}, progress=False)
    kb = KnowledgeBase.open("e5", s)
    assert kb.manifest["build"]["embed_model"] == MINILM and kb.manifest["embed"]["dim"] == 384
    assert search(kb, "database backups", k=1)[0].title.startswith("Northwind")  # still searchable
    kb.close()
    reindex("e5", s, {"embed_model": E5_SMALL}, progress=False)
    assert json.loads((e5_kb / "e5" / "manifest.json").read_text())["build"]["embed_model"] == E5_SMALL
    assert "劳动合同法" in _dense_top_title(e5_kb, q)


def test_no_chunk_is_longer_than_the_model_reads(e5_kb: Path) -> None:
    s = load_settings(home=e5_kb, device="cpu")
    kb = KnowledgeBase.open("e5", s)
    emb = embedder_for(kb.settings)
    segs = [u for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id) if u.level == Level.SEGMENT]
    kb.close()
    lens = [emb.count_tokens(u.text) for u in segs]
    assert segs and max(lens) <= min(s.chunk_max_tokens, emb.max_doc_tokens), max(lens)
    assert emb.max_doc_tokens == 512 - 2 - 3  # window - <s></s> - "passage: "


def test_segment_pass_stores_the_vector_of_each_segments_text(e5_kb: Path) -> None:
    s = load_settings(home=e5_kb, device="cpu")
    kb = KnowledgeBase.open("e5", s)
    segs = [u for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id) if u.level == Level.SEGMENT][:6]
    stored = np.stack([kb.vectors.reconstruct(u.unit_id) for u in segs])
    alone = kb.embedder.encode_docs([u.text for u in segs])
    kb.close()
    # float16 index (~1e-3) and, on the default onnx-int8 backend, activations quantised with a scale per
    # batch: the same text in another batch moves by ~2e-3 (torch: identical to 1e-6)
    assert np.all(np.sum(stored * alone, axis=1) > 0.995)


def test_a_vanished_model_folder_names_the_model_and_the_fix(e5_kb: Path, tmp_path: Path) -> None:
    copy = tmp_path / "my-encoder"
    shutil.copytree(built_model_dir(E5_SMALL), copy, ignore=shutil.ignore_patterns("onnx"))
    home = tmp_path / "home"
    (home).mkdir()
    r = docqa("ingest", str(DOCS / FILES[1]), "--kb", "local", "--no-progress", home=home,
              env={"DOCQA_EMBED_MODEL": str(copy)})
    assert r.returncode == 0, r.stderr
    shutil.rmtree(copy)
    r = docqa("search", "backups", "--kb", "local", home=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(copy) in r.stderr and "docqa reindex" in r.stderr, r.stderr
    r = docqa("search", "backups", "--kb", "e5", home=e5_kb, env={"DOCQA_MODELS_DIR": str(tmp_path / "none")})
    assert r.returncode == 2 and E5_SMALL in r.stderr and "docqa models build" in r.stderr, r.stderr


def test_warm_up_loads_what_the_first_answer_would(e5_kb: Path) -> None:
    """A server's first answer used to pay ~1 CPU-s: jieba's dictionary (keyword search) and onnxruntime's
    batch-sized session (the claim check) started on first use. KnowledgeBase.warm_up starts them."""
    import subprocess

    script = ("import sys, jieba; from docqa.kb import KnowledgeBase; from docqa.settings import load_settings; "
              f"kb = KnowledgeBase.open('e5', load_settings(home={str(e5_kb)!r}, device='cpu')); "
              "assert not jieba.dt.initialized; kb.warm_up(); "
              "print(jieba.dt.initialized, kb.embedder.lean, sorted(kb.embedder.model._sessions))")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-4:] == ["True", "True", "[0,", "1]"], out.stdout
