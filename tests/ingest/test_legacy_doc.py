"""Legacy .doc files (issue #10): converted by LibreOffice where it is installed, read like the .docx they
become; reported with what to do where it is not. The real .doc of ../shared/data has a .docx twin (the
same standard saved both ways), so the converted text is checked against the twin's."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import LoadError, load_file
from ingest.loaders.legacy_doc import NO_LIBREOFFICE, soffice

pytestmark = pytest.mark.slow  # left out of `make test-fast`

NAME = "核电厂定期安全审查指南 第1部分：通用要求（征求意见稿）"
needs_libreoffice = pytest.mark.skipif(soffice() is None, reason="LibreOffice is not installed "
                                       "(deploy/install_test_tools.sh installs libreoffice-writer-nogui)")


@pytest.fixture(scope="module")
def twin(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "documents_zh" / "docx"
    return folder / f"{NAME}.doc", folder / f"{NAME}.docx"


@needs_libreoffice
def test_a_real_doc_reads_like_its_docx_twin(twin) -> None:
    doc_path, docx_path = twin
    (doc,) = load_file(doc_path)
    (ref,) = load_file(docx_path)
    assert doc.source == str(doc_path.resolve()) and doc.meta["format"] == "doc"
    ref_paras = [b.text for b in ref.blocks if len(b.text) > 10]
    text = doc.text
    found = sum(p in text for p in ref_paras) / len(ref_paras)
    assert found >= 0.9, found  # the same standard: (nearly) every paragraph of the twin is there
    assert any(b.kind.value == "heading" for b in doc.blocks)  # headings survive the conversion
    again = load_file(doc_path)[0]
    assert again.content_hash == doc.content_hash  # the .doc's own hash: an unchanged file is skipped next time


@needs_libreoffice
def test_a_damaged_doc_is_reported_and_the_batch_goes_on(tmp_path: Path, twin) -> None:
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths

    doc_path, _ = twin
    (tmp_path / "docs").mkdir()
    data = doc_path.read_bytes()
    (tmp_path / "docs" / "cut.doc").write_bytes(data[:2048])  # the OLE header, then nothing
    (tmp_path / "docs" / "ok.md").write_text("# 正常\n\n这是一份正常的文件。\n", encoding="utf-8")
    report = ingest_paths([tmp_path / "docs"], "legacy", load_settings(home=tmp_path / "home", keyphrases=0),
                          progress=False)
    assert report.added == 1 and [Path(f.path).name for f in report.failures] == ["cut.doc"]
    assert "LibreOffice" in report.failures[0].reason or "no text" in report.failures[0].reason


def test_without_libreoffice_the_file_is_reported_with_what_to_do(twin, monkeypatch, tmp_path: Path) -> None:
    doc_path, _ = twin
    monkeypatch.setenv("PATH", str(tmp_path))  # no soffice on this PATH
    with pytest.raises(LoadError) as e:
        load_file(doc_path)
    assert e.value.reason == NO_LIBREOFFICE and "apt-get install libreoffice-writer-nogui" in e.value.reason
