"""Per-file resource limits (issue #9): every hostile file is one reported failure naming the limit
it broke, within seconds, and the good file beside it in the same batch is ingested.

The files come from bench/hostile_files.py's builders (real DOCX, PDF, HTML and JSONL bytes, parsed by
the real loaders), in sizes just over the default limits so the suite stays fast; the bench runs the
full-size ones (bench/reports/hostile_files.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from kb_helpers import keyword_finds

from docqa.settings import load_settings
from ingest.loaders import LoadError, load_file
from ingest.loaders.isolated import IsolatedLoader
from ingest.loaders.limits import Limits
from ingest.pipeline import ingest_paths

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import bench.hostile_files as hostile  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
pytestmark = pytest.mark.usefixtures("embed_model")

# file name -> (builder, words the reason must contain)
HOSTILE = {
    "bomb.docx": (lambda p: hostile.docx_zip_bomb(p, 200 * 2**20), ["unpacked-size limit", "max_unpacked_mb"]),
    # the zip directory says 4,000 bytes; the stream inflates to 256 MiB
    "liar.docx": (lambda p: hostile.docx_zip_bomb(p, 256 * 2**20, declared=4000),
                  ["word/document.xml", "declares 4000 bytes", "a zip bomb"]),
    "flate.pdf": (lambda p: hostile.pdf_flate_bomb(p, 256 * 2**20), ["safety limit", "decompression bomb"]),
    "deep.html": (lambda p: hostile.deep_html(p, 10_000), ["nested more than 256 deep", "max_html_depth"]),
    "long.jsonl": (lambda p: hostile.jsonl_long_record(p, 5.0), ["line 1", "record-size limit", "max_record_mb"]),
    "cycle.pdf": (hostile.pdf_page_tree_cycle, ["cyclic page references"]),
    "many.pdf": (lambda p: hostile.pdf_many_pages(p, 200_000), ["too many pages", "max_pages"]),
    "liar.pdf": (hostile.pdf_count_lie, ["10,000,000 pages", "5,000-page limit", "max_pages"]),
}


def _settings(home: Path, **kw):
    return load_settings(home=home, embed_model=MODEL, embed_backend="torch", keyphrases=0, **kw)


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, (build, _) in HOSTILE.items():
        build(folder / name)
    (folder / "good.md").write_text(hostile.GOOD_TEXT, encoding="utf-8")
    return folder


@pytest.mark.parametrize("isolation", [True, False], ids=["parser-process", "in-process"])
def test_each_hostile_file_is_reported_by_its_limit_and_the_batch_goes_on(hostile_dir: Path, tmp_path: Path,
                                                                          isolation: bool) -> None:
    settings = _settings(tmp_path / "home", parse_isolation=isolation)
    t0 = time.monotonic()
    report = ingest_paths([hostile_dir], "hostile", settings, progress=False)
    took = time.monotonic() - t0
    reasons = {Path(f.path.split("#")[0]).name: f.reason for f in report.failures}
    assert set(reasons) == set(HOSTILE), reasons
    for name, (_, words) in HOSTILE.items():
        for w in words:
            assert w in reasons[name], (name, reasons[name])
    # the good file, and the short record on line 2 of long.jsonl: one bad record does not drop its file
    assert report.committed and report.added == 2
    assert keyword_finds(settings, "hostile", "quokkaflux")
    assert took < 120, f"the batch took {took:.0f}s"  # a hang, not a speed target: limits are checked up front


def test_a_parser_past_the_time_limit_is_stopped_and_the_next_file_still_parses(tmp_path: Path) -> None:
    """A DOCX under every size limit whose 32 MB of XML python-docx needs over a minute to parse."""
    slow = hostile.docx_zip_bomb(tmp_path / "a-slow.docx", 32 * 2**20)
    good = tmp_path / "b-good.md"
    good.write_text(hostile.GOOD_TEXT, encoding="utf-8")
    with IsolatedLoader(Limits(), timeout_s=2, memory_mb=2048) as loader:
        t0 = time.monotonic()
        with pytest.raises(LoadError, match=r"longer than the 2 s per-file limit \(file_timeout_s\)"):
            loader.load(slow)
        assert time.monotonic() - t0 < 20
        docs = loader.load(good)
    assert "quokkaflux" in docs[0].blocks[0].text or any("quokkaflux" in b.text for b in docs[0].blocks)


def test_a_parser_past_the_memory_limit_is_reported(tmp_path: Path) -> None:
    big = hostile.docx_zip_bomb(tmp_path / "big.docx", 100 * 2**20)
    with IsolatedLoader(Limits(), timeout_s=120, memory_mb=300) as loader, \
            pytest.raises(LoadError, match="memory") as err:
        loader.load(big)
    assert "parse_memory_mb" in err.value.reason


def test_limits_are_settings(tmp_path: Path) -> None:
    """Each limit comes from its setting: a user with bigger honest files raises it."""
    page = tmp_path / "deep.html"
    hostile.deep_html(page, 300)
    with pytest.raises(LoadError, match="max_html_depth"):
        load_file(page)
    docs = load_file(page, limits=Limits.from_settings(_settings(tmp_path, max_html_depth=400)))
    assert "深层文本" in docs[0].blocks[0].text
