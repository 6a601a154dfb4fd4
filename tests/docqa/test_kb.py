"""Atomic commits of a knowledge base: whatever happens during a change, readers see the old
generation or the new one, never a mix, and the next writer starts clean.

Failures are injected only through the standard library (``os.replace`` as the manifest module
uses it) or real signals to a real ``docqa ingest`` process; our own code runs unpatched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kb_helpers import keyword_finds

import docqa.kb.manifest as manifest_mod
from docqa.kb import KBError, KBWriter, KnowledgeBase
from docqa.kb.manifest import gen_dir, read_manifest
from docqa.search import search
from docqa.settings import load_settings
from ingest.pipeline import FLUSH_UNITS, ingest_paths

REPO = Path(__file__).resolve().parents[2]
KB = "atomic"
OLD = "第一条 本制度适用于 zebracorn 项目组的全体成员，成员应当遵守保密义务。"
NEW = "第二条 quokkaflux 项目的预算由财务部统一审批，任何人不得超支。"

pytestmark = [pytest.mark.usefixtures("embed_model"), pytest.mark.slow]  # slow: left out of `make test-fast`


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def found(settings, token: str) -> bool:
    return keyword_finds(settings, KB, token)


def generation(settings) -> int:
    return int(read_manifest(settings.home / KB)["generation"])


@pytest.fixture
def base(tmp_path: Path):
    """A KB at generation 1 holding OLD, and a file holding NEW waiting to be ingested."""
    settings = load_settings(home=tmp_path / "home")
    ingest_paths([write(tmp_path / "docs", "old.txt", OLD)], KB, settings, progress=False)
    assert generation(settings) == 1 and found(settings, "zebracorn")
    return settings, write(tmp_path / "docs", "new.txt", NEW)


def fail_manifest_swap(monkeypatch: pytest.MonkeyPatch, exc: BaseException, *, after: bool = False) -> None:
    """Make the manifest's atomic rename raise ``exc`` (before it happens, or just after)."""
    real = os.replace

    def replace(src, dst, *a, **kw):
        if Path(dst).name != manifest_mod.MANIFEST:
            return real(src, dst, *a, **kw)
        if after:
            real(src, dst, *a, **kw)
        raise exc

    monkeypatch.setattr(manifest_mod.os, "replace", replace)


def assert_writable(settings) -> None:
    """The write lock is free: a new writer opens and leaves without committing."""
    with KBWriter(KB, settings, create=False) as w:
        assert not w.changed


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["oserror", "ctrl-c"])
def test_failure_at_the_manifest_swap_keeps_the_old_generation(base, monkeypatch, exc) -> None:
    settings, new_file = base
    fail_manifest_swap(monkeypatch, exc)
    # ENOSPC is said in words (issue #9); Ctrl-C stays a KeyboardInterrupt for the CLI to report
    with pytest.raises(KBError if isinstance(exc, OSError) else type(exc)) as err:
        ingest_paths([new_file], KB, settings, progress=False)
    if isinstance(exc, OSError):
        assert "disk full while writing generation 2" in str(err.value) and "the KB is unchanged" in str(err.value)
    monkeypatch.undo()

    assert generation(settings) == 1
    assert not gen_dir(settings.home / KB, 2).exists(), "the uncommitted generation must be removed"
    assert found(settings, "zebracorn") and not found(settings, "quokkaflux")
    assert_writable(settings)

    report = ingest_paths([new_file], KB, settings, progress=False)  # and the next try just works
    assert report.committed and report.generation == 2 and report.added == 1
    assert found(settings, "quokkaflux") and found(settings, "zebracorn")
    assert not list((settings.home / KB).glob(".manifest.json.*.tmp")), "a crashed writer's temp manifest stays"


def test_failure_right_after_the_swap_keeps_the_new_generation(base, monkeypatch) -> None:
    """Once the manifest names gen N+1, cleanup after a later error must not delete it."""
    settings, new_file = base
    fail_manifest_swap(monkeypatch, OSError(5, "I/O error"), after=True)
    with pytest.raises(OSError):
        ingest_paths([new_file], KB, settings, progress=False)
    monkeypatch.undo()

    assert generation(settings) == 2
    assert gen_dir(settings.home / KB, 2).is_dir()
    assert found(settings, "quokkaflux")
    assert_writable(settings)


def test_a_second_writer_gets_a_clear_error(base) -> None:
    settings, new_file = base
    with KBWriter(KB, settings, create=False):
        with pytest.raises(KBError, match="being written by another process"):
            ingest_paths([new_file], KB, settings, progress=False)
    assert generation(settings) == 1
    assert ingest_paths([new_file], KB, settings, progress=False).committed


def test_readers_keep_their_generation_while_a_writer_commits(base) -> None:
    settings, new_file = base
    reader = KnowledgeBase.open(KB, settings)
    ingest_paths([new_file], KB, settings, progress=False)
    assert reader.is_stale() and reader.generation == 1
    hits = search(reader, "zebracorn", 3, mode="keyword")  # the old generation is still on disk
    assert hits and "zebracorn" in hits[0].text
    assert not search(reader, "quokkaflux", 3, mode="keyword")
    reader.close()


def test_old_generations_are_collected(base, tmp_path) -> None:
    settings, _ = base
    for i in range(3):
        ingest_paths([write(tmp_path / "docs", f"n{i}.txt", f"第{i}条 文件编号 doc{i} 的内容。")], KB, settings,
                     progress=False)
    gens = sorted(p.name for p in (settings.home / KB).glob("gen-*"))
    assert gens == ["gen-000003", "gen-000004"]  # the current one and one previous for open readers


def test_build_settings_are_fixed_by_the_manifest(base, monkeypatch) -> None:
    settings, _ = base
    monkeypatch.setenv("DOCQA_CHUNK_MAX_TOKENS", "999")
    kb = KnowledgeBase.open(KB, load_settings(home=settings.home))
    assert kb.settings.chunk_max_tokens == settings.chunk_max_tokens != 999
    assert kb.manifest["build"]["embed_model"] == settings.embed_model
    kb.close()


def test_bad_names_and_unknown_kbs_are_kb_errors(tmp_path) -> None:
    settings = load_settings(home=tmp_path / "home")
    for bad in ["", "../etc", "a/b", "-x", "x" * 65]:
        with pytest.raises(KBError, match="invalid KB name"):
            KnowledgeBase.open(bad, settings)
    with pytest.raises(KBError, match="not found"):
        KnowledgeBase.open("nope", settings)
    with pytest.raises(KBError, match="not found"):
        KBWriter("nope", settings, create=False)


# ---------------------------------------------------------------- real signals to a real process


def _start_ingest(folder: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "DOCQA_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "ingest", str(folder), "--kb", KB, "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # SIGINT must raise KeyboardInterrupt even when CI started us with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_until_writing(proc: subprocess.Popen, gdir: Path, timeout: float = 600.0) -> None:
    """Block until the writer has put its first batch of units into the uncommitted generation
    (tantivy's writer lock appears with the first keyword-index add, after the SQLite and FAISS
    writes of that batch), i.e. the process is in the middle of its work with data in all stores."""
    deadline = time.monotonic() + timeout
    mark = gdir / "lexical" / ".tantivy-writer.lock"
    while not mark.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ingest ended (rc={proc.returncode}) before it could be interrupted: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("ingest never started writing units")
        time.sleep(0.02)


@pytest.fixture
def big_folder(tmp_path: Path) -> Path:
    """40 files of short articles: about twice the units of one write batch (``FLUSH_UNITS``), so
    the process is killed after its first batch and well before its commit. Short units keep the
    embedding work, and so the test, cheap."""
    folder = tmp_path / "big"
    for i in range(40):
        lines = [f"第{j + 1}条 编号 F{i:03d}-{j:02d} 的事项由第{(i + j) % 7 + 1}部门负责办理。" for j in range(24)]
        write(folder, f"f{i:03d}.txt", "\n\n".join(lines))
    assert FLUSH_UNITS < 40 * 24
    return folder


def _assert_previous_state(settings) -> None:
    kb = KnowledgeBase.open(KB, settings)
    assert kb.generation == 1 and kb.store.counts()["docs"] == 1
    hits = search(kb, "zebracorn 保密义务", 3)  # hybrid: vectors and keyword index both readable
    assert hits and "zebracorn" in hits[0].text
    kb.close()


@pytest.mark.slow
def test_sigkill_mid_ingest_leaves_the_previous_generation(base, big_folder) -> None:
    settings, new_file = base
    root = settings.home / KB
    proc = _start_ingest(big_folder, settings.home)
    _wait_until_writing(proc, gen_dir(root, 2))
    proc.kill()
    proc.wait(30)

    assert generation(settings) == 1, "the kill came after the commit: the corpus is too small"
    assert gen_dir(root, 2).is_dir()  # the dead writer's half-built generation, named by no manifest
    _assert_previous_state(settings)

    report = ingest_paths([new_file], KB, settings, progress=False)  # the lock died with the process
    assert report.committed and report.generation == 2
    kb = KnowledgeBase.open(KB, settings)
    assert kb.store.counts()["docs"] == 2, "nothing of the killed ingest may survive in the new generation"
    assert {Path(d["source"]).name for d in kb.store.list_docs()} == {"old.txt", "new.txt"}
    kb.close()


@pytest.mark.slow
def test_ctrl_c_mid_ingest_rolls_back_and_says_so(base, big_folder) -> None:
    settings, _ = base
    root = settings.home / KB
    proc = _start_ingest(big_folder, settings.home)
    _wait_until_writing(proc, gen_dir(root, 2))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: nothing was committed"), err
    assert "Traceback" not in err and out == ""
    assert generation(settings) == 1 and not gen_dir(root, 2).exists()
    _assert_previous_state(settings)
    assert_writable(settings)


# ---------------------------------------------------------------- broken state: never treated as empty


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage", "list", "generation"])
def test_an_unreadable_manifest_is_never_replaced_by_a_new_kb(base, damage: str) -> None:
    """Issue #9: ingesting into a KB whose manifest.json was truncated or lost used to start the KB over
    at generation 1 and drop every document. Now the writer refuses and names the data on disk."""
    settings, new = base
    man = settings.home / KB / manifest_mod.MANIFEST
    before = {p.name for p in (settings.home / KB).iterdir()}
    if damage == "truncate":
        man.write_bytes(man.read_bytes()[:50])
    elif damage == "delete":
        man.unlink()
    elif damage == "garbage":
        man.write_bytes(b"\x00\xff garbage")
    elif damage == "list":
        man.write_text("[]")
    else:
        man.write_text('{"format_version": 1, "generation": "seven"}')
    with pytest.raises(KBError) as err:
        ingest_paths([new], KB, settings, progress=False)
    assert "refusing to write" in str(err.value) and "gen-000001" in str(err.value), err.value
    assert {p.name for p in (settings.home / KB).iterdir()} - {manifest_mod.MANIFEST} <= before
    assert list((settings.home / KB / "gen-000001" / "segments").glob("*.sqlite"))  # the data is untouched


@pytest.mark.parametrize("name", ["nl\n", "tab\tname", "a/b", "", ".hidden", "x" * 65])
def test_kb_names_with_control_characters_or_paths_are_refused(name: str) -> None:
    from docqa.kb import validate_name

    with pytest.raises(KBError, match="invalid KB name"):
        validate_name(name)
