"""KBs on real volumes (issue #9): a KB published read-only is searched and served, a writer on it
gets one clear line, and a KB damaged while the server runs is a 503 for that KB until
``docqa repair`` fixes it, with no restart.

The read-only volume is a read-only bind mount in a private mount namespace (tests/mount_helpers.py);
the server runs inside it, the test talks HTTP to it from outside, as a client would.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import httpx
import pytest
from docqa_server import LAW, LOADING_QUESTION, NOTES, DocqaServer, cli, docqa_cmd, docqa_env
from mount_helpers import in_mount_ns, mount_ns_prefix

pytestmark = pytest.mark.slow  # left out of `make test-fast`


@pytest.fixture
def home_copy(kb_home: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(kb_home, dst, ignore=shutil.ignore_patterns("broken", "*.log", "audit.jsonl", ".write.lock"))
    return dst


def _ro_prefix(home: Path) -> list[str]:
    prefix, why = mount_ns_prefix()
    if prefix is None:
        pytest.skip(why)
    h = shlex.quote(str(home))
    return [*prefix, "sh", "-ec", f'mount --bind {h} {h}; mount -o remount,bind,ro {h}; exec "$@"', "sh"]


def test_a_read_only_kb_is_searched_and_served(home_copy: Path) -> None:
    """Opening tantivy takes a lock file and SQLite may write a journal: on a read-only volume both
    failed ("Failed to acquire Lockfile"). Readers now write nothing; the audit log, kept in the KB
    folder by default, is reported as unwritable at start-up."""
    server = DocqaServer(home_copy, prefix=_ro_prefix(home_copy)).start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as c:
            listed = {k["name"]: k for k in c.get("/v1/kbs").json()["kbs"]}
            assert listed[LAW]["status"] == "ok" and listed[NOTES]["status"] == "ok", listed
            hits = c.post("/v1/search", json={"query": "试用期", "kb": LAW, "mode": "keyword"})
            assert hits.status_code == 200 and hits.json()["hits"], hits.text
            chat = c.post("/v1/chat", json={"question": LOADING_QUESTION, "kb": LAW})
            assert chat.status_code == 200 and chat.json()["citations"], chat.text
        assert "audit log" in server.log() and "cannot be written" in server.log()
    finally:
        server.stop()


def test_a_writer_on_a_read_only_kb_gets_one_clear_line(home_copy: Path, tmp_path: Path) -> None:
    _ro_prefix(home_copy)  # skips where no mount namespace is allowed
    doc = tmp_path / "new.md"
    doc.write_text("# 新规定\n\n访客须登记。\n", encoding="utf-8")
    h, cmd = shlex.quote(str(home_copy)), " ".join(shlex.quote(c) for c in docqa_cmd())
    proc = in_mount_ns(f"mount --bind {h} {h}; mount -o remount,bind,ro {h}\n"
                       f"{cmd} search 访客 --kb {NOTES} --mode keyword\n"
                       f"exec {cmd} ingest {shlex.quote(str(doc))} --kb {NOTES} --no-progress",
                       env={**docqa_env(home_copy), "PATH": os.environ.get("PATH", "")})
    assert "访客" in proc.stdout, proc.stdout + proc.stderr  # the CLI reader works too
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "is not writable" in lines[0], proc.stderr


def test_a_kb_damaged_while_served_is_503_until_repaired(home_copy: Path) -> None:
    server = DocqaServer(home_copy).start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as c:
            assert c.post("/v1/search", json={"query": "访客", "kb": NOTES}).status_code == 200
            manifest = home_copy / NOTES / "manifest.json"
            good = manifest.read_bytes()
            manifest.write_bytes(good[:40])
            r = c.post("/v1/search", json={"query": "访客", "kb": NOTES})
            assert r.status_code == 503 and "docqa repair --kb notes" in r.json()["error"]["message"], r.text
            assert c.post("/v1/search", json={"query": "试用期", "kb": LAW}).status_code == 200
            listed = {k["name"]: k for k in c.get("/v1/kbs").json()["kbs"]}
            assert listed[NOTES]["status"] == "broken" and listed[LAW]["status"] == "ok"
            out = cli(home_copy, "repair", "--kb", NOTES, "--apply")
            assert out.exit_code == 0, out.output
            r = c.post("/v1/search", json={"query": "访客", "kb": NOTES})
            assert r.status_code == 200 and r.json()["hits"], r.text
    finally:
        server.stop()
