"""Past one machine (#24): two `docqa serve` replicas read one KB folder while a third process commits to it.

The shape of the deploy docs: read-only replicas on a published KB volume, one writer. Each commit
replaces a counter document (its value goes up by one) and adds a new document, so a response that saw
half of a commit would hold two counter values (the old document and its replacement) or none. Clients
hammer both servers for the whole time: every answer is a 200 with exactly one counter value, a server
never goes back to an older value, and both end on the last one without a restart.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from docqa_server import NOTES, DocqaServer, docqa_cmd, docqa_env

pytestmark = pytest.mark.slow

COMMITS = 5
COUNTER = "计数器 REPLICACOUNTER 当前值为 V{n} ，每次提交加一。"


def _counter_values(hits: list[dict]) -> list[int]:
    return [int(m) for h in hits for m in re.findall(r"REPLICACOUNTER 当前值为 V(\d+)", h.get("text", ""))]


@pytest.fixture
def home_copy(kb_home: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(kb_home, dst, ignore=shutil.ignore_patterns("*.log", "audit.jsonl", ".write.lock"))
    return dst


def test_two_servers_read_one_kb_while_a_third_process_commits(home_copy: Path, tmp_path: Path) -> None:
    docs = tmp_path / "writer"
    docs.mkdir()
    counter = docs / "counter.md"
    env = docqa_env(home_copy, DOCQA_KEYPHRASES="0")

    def commit(n: int) -> None:
        counter.write_text(COUNTER.format(n=n), encoding="utf-8")
        extra = docs / f"extra-{n}.md"
        extra.write_text(f"第{n}份补充说明：REPLICAEXTRA{n} 的访客须提前一天登记。", encoding="utf-8")
        proc = subprocess.run([*docqa_cmd(), "ingest", str(counter), str(extra), "--kb", NOTES, "--no-progress"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr

    commit(0)
    servers = [DocqaServer(home_copy).start() for _ in range(2)]
    seen: dict[int, list[int]] = {0: [], 1: []}
    problems: list[str] = []
    stop = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(base_url=servers[i].url, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v1/search", json={"query": "REPLICACOUNTER 当前值", "kb": NOTES, "mode": "keyword",
                                               "k": 10})
                if r.status_code != 200:
                    problems.append(f"server {i}: HTTP {r.status_code} {r.text[:200]}")
                    continue
                values = _counter_values(r.json()["hits"])
                if len(values) != 1:
                    problems.append(f"server {i}: counter values {values} in one answer (a half-seen commit)")
                    continue
                if seen[i] and values[0] < seen[i][-1]:
                    problems.append(f"server {i}: went back from V{seen[i][-1]} to V{values[0]}")
                seen[i].append(values[0])

    try:
        for s in servers:
            s.wait_ready()
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in (0, 1)]
        for t in threads:
            t.start()
        for n in range(1, COMMITS + 1):
            commit(n)
            time.sleep(0.5)
        deadline = time.time() + 30  # each replica picks the last generation up on its next request
        while time.time() < deadline and not all(seen[i] and seen[i][-1] == COMMITS for i in (0, 1)):
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not problems, problems[:5]
        for i in (0, 1):
            assert seen[i][-1] == COMMITS, f"server {i} ended on V{seen[i][-1]}"
            assert len(set(seen[i])) >= 3, f"server {i} saw too few commits to tell: {sorted(set(seen[i]))}"
        with httpx.Client(base_url=servers[1].url, timeout=60) as c:
            extra = c.post("/v1/search", json={"query": f"REPLICAEXTRA{COMMITS}", "kb": NOTES, "mode": "keyword"})
            assert any(f"REPLICAEXTRA{COMMITS}" in h["text"] for h in extra.json()["hits"])
    finally:
        stop.set()
        for s in servers:
            s.stop()
