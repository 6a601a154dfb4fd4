"""A damaged KB (issue #9): every way its files can go wrong outside docqa is one KB error naming
the damage and the way out, no write proceeds on it, and ``docqa repair`` brings back the newest
complete generation.

The KB template is built once (two generations, the way users grow a KB) and copied per test;
damage is done to the copy's files with plain file operations, the way a full disk, a bad restore
or a hand-deleted folder does it.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kb_helpers import keyword_finds
from mount_helpers import in_mount_ns, mount_ns_prefix

from docqa.kb import KBError, KBWriter, KnowledgeBase
from docqa.kb.manifest import KBDamaged, read_manifest
from docqa.models.embedder import ModelNotAvailable
from docqa.search import search
from docqa.settings import load_settings
from ingest.pipeline import ingest_paths

REPO = Path(__file__).resolve().parents[2]
KB = "dmg"
FIRST = "第一条 本制度适用于 zebracorn 项目组的全体成员，成员应当遵守保密义务。"
SECOND = "第二条 quokkaflux 项目的预算由财务部统一审批，任何人不得超支。"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the smallest encoder: these tests are about files

pytestmark = [pytest.mark.usefixtures("embed_model"), pytest.mark.slow]  # slow: left out of `make test-fast`


def _settings(home: Path):
    return load_settings(home=home, embed_model=MODEL, embed_backend="torch", keyphrases=0)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DOCQA_HOME with KB ``dmg`` at generation 2: FIRST committed in 1, SECOND added in 2."""
    root = tmp_path_factory.mktemp("dmg")
    docs = root / "docs"
    docs.mkdir()
    settings = _settings(root / "home")
    (docs / "first.txt").write_text(FIRST, encoding="utf-8")
    ingest_paths([docs / "first.txt"], KB, settings, progress=False)
    (docs / "second.txt").write_text(SECOND, encoding="utf-8")
    ingest_paths([docs / "second.txt"], KB, settings, progress=False)
    assert read_manifest(root / "home" / KB)["generation"] == 2
    return root / "home"


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(template, dst)
    return dst


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env.update(DOCQA_HOME=str(home), DOCQA_EMBED_MODEL=MODEL, DOCQA_EMBED_BACKEND="torch", DOCQA_KEYPHRASES="0",
               HF_HUB_OFFLINE="1")
    return env


def _docqa_cmd() -> list[str]:
    script = Path(sys.executable).with_name("docqa")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]


def docqa(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The real console script in a subprocess, on ``home``."""
    return subprocess.run([*_docqa_cmd(), *args], env=_env(home), cwd=home.parent, capture_output=True, text=True,
                          timeout=600)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _gen(home: Path, n: int) -> Path:
    return home / KB / f"gen-{n:06d}"


def _newest(g: Path, ext: str) -> Path:
    """The newest segment's store (``sqlite``) or vectors (``faiss``) file of generation folder ``g``."""
    return sorted((g / "segments").glob(f"s*.{ext}"))[-1]


MANIFEST_DAMAGE = {
    "truncated": lambda m: m.write_bytes(m.read_bytes()[:50]),
    "deleted": lambda m: m.unlink(),
    "garbage": lambda m: m.write_bytes(b"\x00\xff\xfe garbage \x80"),
    "list": lambda m: m.write_text("[]"),
    "text generation": lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "generation": "2"})),
    "missing generation": lambda m: m.write_text(json.dumps({**json.loads(m.read_text()), "generation": 7})),
}
FILE_DAMAGE = {
    "vectors truncated": lambda g: os.truncate(_newest(g, "faiss"), 100),
    "vectors deleted": lambda g: _newest(g, "faiss").unlink(),
    "store truncated": lambda g: os.truncate(_newest(g, "sqlite"), 4096),
    "keyword index damaged": lambda g: [os.truncate(f, 10) for f in (g / "lexical").glob("*.idx")],
    "keyword index deleted": lambda g: shutil.rmtree(g / "lexical"),
    "generation folder deleted": lambda g: shutil.rmtree(g),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_one_kb_error_and_repair_brings_the_kb_back(home: Path, damage: str) -> None:
    MANIFEST_DAMAGE[damage](home / KB / "manifest.json")
    settings = _settings(home)
    with pytest.raises(KBDamaged, match="repair --kb dmg"):
        KnowledgeBase.open(KB, settings).vectors  # noqa: B018 - a missing generation shows when its files load
    err = one_line_error(docqa(home, "search", "zebracorn", "--kb", KB))
    assert "repair" in err
    listed = json.loads(docqa(home, "kbs", "--json").stdout)
    assert listed == [{"name": KB, "status": "broken", "error": listed[0]["error"]}] and listed[0]["error"]
    dry = docqa(home, "repair", "--kb", KB)
    assert dry.returncode == 1 and "would make generation 2 current" in dry.stdout, dry.stdout + dry.stderr
    assert not (home / KB / "manifest.json").is_file() or damage != "deleted"  # a dry run writes nothing
    fixed = docqa(home, "repair", "--kb", KB, "--apply")
    assert fixed.returncode == 0 and "repaired" in fixed.stdout, fixed.stdout + fixed.stderr
    assert keyword_finds(settings, KB, "zebracorn") and keyword_finds(settings, KB, "quokkaflux")
    again = docqa(home, "repair", "--kb", KB)
    assert again.returncode == 0 and "healthy" in again.stdout
    build = read_manifest(home / KB)["build"]
    assert build["embed_model"] == MODEL  # the settings the generation was written with, not defaults


@pytest.mark.parametrize("damage", list(FILE_DAMAGE))
def test_damaged_generation_files_are_found_and_repair_falls_back_to_the_previous_one(home: Path, damage: str) -> None:
    FILE_DAMAGE[damage](_gen(home, 2))
    settings = _settings(home)
    with pytest.raises(KBDamaged, match="generation 2") as err:
        kb = KnowledgeBase.open(KB, settings)
        search(kb, "zebracorn", 3)
    assert "\n" not in str(err.value)
    plan = docqa(home, "repair", "--kb", KB, "--json")
    report = json.loads(plan.stdout)
    assert plan.returncode == 1 and report["chosen_generation"] == 1, plan.stdout
    assert any("older than the one the manifest named" in n for n in report["notes"])
    assert docqa(home, "repair", "--kb", KB, "--apply").returncode == 0
    assert keyword_finds(settings, KB, "zebracorn") and not keyword_finds(settings, KB, "quokkaflux")
    # the KB takes writes again: SECOND is ingested anew into generation 2
    second = home.parent / "again.txt"
    second.write_text(SECOND, encoding="utf-8")
    ingest_paths([second], KB, settings, progress=False)
    assert keyword_finds(settings, KB, "quokkaflux")


def test_repair_with_no_complete_generation_says_so(home: Path) -> None:
    for g in (1, 2):
        FILE_DAMAGE["store truncated"](_gen(home, g))
    (home / KB / "manifest.json").write_text("{")
    proc = docqa(home, "repair", "--kb", KB, "--apply")
    assert proc.returncode == 2 and "no complete generation" in proc.stderr, proc.stdout + proc.stderr
    assert (home / KB / "manifest.json").read_text() == "{"


def test_fuzzed_manifests_and_store_files_only_ever_raise_kb_errors(home: Path, tmp_path: Path) -> None:
    """Mutated manifests (truncations, byte flips, fields of the wrong JSON type) and truncated store
    files: opening and searching raises nothing but a KBError, and a writer never proceeds on a
    manifest that cannot be read."""
    settings = _settings(home)
    man = home / KB / "manifest.json"
    good = man.read_bytes()
    rng = random.Random(9)
    doc = json.loads(good)
    cases: list[bytes] = [good[:n] for n in range(0, len(good), max(1, len(good) // 40))]
    for _ in range(60):
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    for key in ("generation", "format_version", "build", "counts", "embed"):
        for value in (None, "x", -1, 2.5, True, [], {}, "2", 10**30):
            cases.append(json.dumps({**doc, key: value}).encode())
    # values of the right JSON type that no setting accepts (CI once drew this flip: "flat_f+16")
    cases.append(json.dumps({**doc, "build": {**doc["build"], "vector_index": "flat_f+16"}}).encode())
    cases.append(json.dumps({**doc, "build": {**doc["build"], "chunk_max_tokens": -5}}).encode())
    cases.append(json.dumps({**doc, "tuned": {"values": {"similarity_threshold": "many"}}}).encode())
    new = tmp_path / "new.txt"
    new.write_text("第三条 新文件。", encoding="utf-8")
    unreadable = 0
    for data in cases:
        man.write_bytes(data)
        try:
            read_manifest(home / KB)
        except KBError:
            unreadable += 1
            with pytest.raises(KBError):
                with KBWriter(KB, settings):
                    pass
        try:
            search(KnowledgeBase.open(KB, settings), "zebracorn", 3)
        except KBError:
            pass
        except ModelNotAvailable as e:  # a flipped byte in the build's model name: still a readable manifest
            assert "could not be loaded" in str(e)
    assert unreadable > len(cases) // 2
    man.write_bytes(good)
    store = _newest(_gen(home, 2), "sqlite")
    full = store.read_bytes()
    for size in sorted({0, 100, 512, 4096, len(full) // 2, len(full) - 1}):
        store.write_bytes(full[:size])
        with pytest.raises(KBError):
            search(KnowledgeBase.open(KB, settings), "zebracorn", 3)


def test_disk_full_during_ingest_says_so_and_leaves_the_kb_unchanged(template: Path, tmp_path: Path) -> None:
    """Issue #9: a full disk used to be reported as "internal error". The KB lives on a small tmpfs
    (a real file system that fills up, ENOSPC) in a private mount namespace; the ingest of a big file
    fails with one line saying so, and the KB is exactly as it was."""
    prefix, why = mount_ns_prefix()
    if prefix is None:
        pytest.skip(why)
    big = tmp_path / "big.txt"
    rule = "第{}条 预算编号 {} 的项目由财务部统一审批，任何人不得超支。"
    big.write_text("\n\n".join(rule.format(i, i) * 8 for i in range(300)), encoding="utf-8")
    used = sum(f.stat().st_size for f in template.rglob("*") if f.is_file())
    mnt, out = tmp_path / "disk", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    q = shlex.quote
    docqa_cmd = " ".join(q(c) for c in _docqa_cmd())
    script = f"""
mount -t tmpfs -o size={used + 128 * 1024} tmpfs {q(str(mnt))}
cp -a {q(str(template))}/. {q(str(mnt))}/
ls {q(str(mnt / KB))} > {q(str(out / "before"))}
set +e
{docqa_cmd} ingest {q(str(big))} --kb {KB} --no-progress > {q(str(out / "stdout"))} 2> {q(str(out / "stderr"))}
echo $? > {q(str(out / "rc"))}
ls {q(str(mnt / KB))} > {q(str(out / "after"))}
cp {q(str(mnt / KB / "manifest.json"))} {q(str(out / "manifest.json"))}
{docqa_cmd} search quokkaflux --kb {KB} --mode keyword > {q(str(out / "search"))} 2>&1
"""
    proc = in_mount_ns(script, env={**_env(mnt), "PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    stderr = (out / "stderr").read_text()
    assert (out / "rc").read_text().strip() == "2", (out / "stdout").read_text() + stderr
    err = one_line_error(subprocess.CompletedProcess([], 2, "", stderr))
    assert "disk full while writing generation 3" in err and "the KB is unchanged" in err, err
    assert (out / "after").read_text() == (out / "before").read_text()
    assert json.loads((out / "manifest.json").read_text())["generation"] == 2
    assert "quokkaflux" in (out / "search").read_text()


def test_ingest_into_a_kb_whose_manifest_names_a_missing_generation_names_repair(home: Path) -> None:
    """#23 item 8: not an internal error ("unable to open database file"), the damaged-KB refusal."""
    MANIFEST_DAMAGE["missing generation"](home / KB / "manifest.json")
    doc = home.parent / "third.txt"
    doc.write_text("A third note about pangolin audits.\n", encoding="utf-8")
    proc = docqa(home, "ingest", str(doc), "--kb", KB, "--no-progress")
    err = one_line_error(proc)
    assert proc.returncode == 2 and "generation 7 (gen-000007) is missing" in err and "docqa repair --kb dmg" in err
    assert read_manifest(home / KB)["generation"] == 7  # nothing written


def test_repair_names_a_half_written_generation(home: Path) -> None:
    """#23 item 8: a generation a writer left mid-transaction is 'incomplete', not a read-only database error."""
    store = _newest(_gen(home, 2), "sqlite")
    store.with_name(store.name + "-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + b"\x00" * 504)
    report = json.loads(docqa(home, "repair", "--kb", KB, "--json").stdout)
    problems = json.dumps(report, ensure_ascii=False)
    assert "an incomplete generation" in problems and "readonly" not in problems, problems
    assert report["chosen_generation"] == 1
