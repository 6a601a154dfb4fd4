"""kill -9 of the server while an upload is being ingested: after a restart the KB is the one committed
before (readable, same generation, no trace of the cut-off document), the job says it failed and why,
the half-placed upload is gone, and uploading again works."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest
from docqa_server import BUILD_ENV, DocqaServer, cli

pytestmark = [pytest.mark.usefixtures("embed_model"), pytest.mark.slow]  # slow: left out of `make test-fast`


def _big_markdown() -> bytes:
    """Thousands of distinct paragraphs: embedding them keeps the job running for seconds."""
    paras = [f"## 第{i}节\n\n本节规定编号为 KZ-{i:05d} 的设备每{i % 7 + 1}日巡检一次，巡检记录保存{i % 5 + 2}年。"
             for i in range(3000)]
    return ("# 巡检制度\n\n" + "\n\n".join(paras) + "\n").encode()


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


def test_kill_9_during_an_upload_ingest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "src"
    src.mkdir()
    (src / "visitors.md").write_text("# 访客\n\n访客须在前台登记。\n", encoding="utf-8")
    assert cli(home, "ingest", str(src), "--kb", "main", env=BUILD_ENV).exit_code == 0
    before = json.loads((home / "main" / "manifest.json").read_text())

    server = DocqaServer(home, "--kb", "main").start().wait_ready()
    try:
        r = httpx.post(f"{server.url}/v1/kbs/main/documents", files=[("files", ("inspection.md", _big_markdown()))],
                       timeout=60)
        assert r.status_code == 202, r.text
        job_url = f"{server.url}{r.json()['url']}"
        _wait(lambda: httpx.get(job_url).json()["status"] == "running", 60, "the job never started")
        time.sleep(1.0)  # inside ingest_paths: parsing, chunking, embedding
        assert httpx.get(job_url).json()["status"] == "running"
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    finally:
        server.stop()

    assert json.loads((home / "main" / "manifest.json").read_text())["generation"] == before["generation"]
    server = DocqaServer(home, "--kb", "main").start().wait_ready()
    try:
        job = httpx.get(job_url.replace(job_url.split("/v1/")[0], server.url)).json()
        assert job["status"] == "failed" and "server stopped" in job["error"] and "submit it again" in job["error"]
        docs = httpx.get(f"{server.url}/v1/kbs/main/documents").json()
        assert [d["name"] for d in docs["documents"]] == ["visitors.md"]
        uploads = home / "main" / "uploads"
        assert not (uploads / "inspection.md").exists() and not (uploads / ".incoming").exists()
        hits = httpx.post(f"{server.url}/v1/search", json={"query": "KZ-00042 巡检"}).json()["hits"]
        assert all("KZ-" not in h["text"] for h in hits)
        # the KB still takes writes: the same upload, small this time, goes through
        again = httpx.post(f"{server.url}/v1/kbs/main/documents",
                           files=[("files", ("inspection.md", "# 巡检\n\n设备 KZ-00001 每日巡检。\n".encode()))],
                           timeout=60)
        done = _wait(lambda: (j := httpx.get(f"{server.url}{again.json()['url']}").json())["status"] in
                     ("done", "failed") and j, 120, "the second upload did not finish")
        assert done["status"] == "done", done
        assert "KZ-00001" in httpx.post(f"{server.url}/v1/search", json={"query": "KZ-00001 巡检"}).json()["hits"][0][
            "text"]
    finally:
        server.stop()
