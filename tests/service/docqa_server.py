"""Helpers of the service tests: the real CLI in-process, and ``DocqaServer``, a real
``docqa serve`` (uvicorn) on a free loopback port that records what it answered while still
loading, so the 503-then-200 readiness contract is checked on a real start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import Result

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "examples" / "docs"
# A statute, a State Council notice (HTML) and the English handbook: every kind of document in
# examples/docs, at a third of its size, so the KB builds in seconds on a 2-core CI box.
LAW_FILES = ("劳动合同法(2012-12-28).md", "gov.cn_content_5346276_国务院办公厅关于2019年部分节假日安排的通知.html",
             "docqa-operations-handbook.md")
# Keyphrase extraction is the slowest build step (it embeds every candidate phrase) and is tested
# in tests/ingest; these KBs are for serving and answering, so they are built without it.
BUILD_ENV = {"DOCQA_KEYPHRASES": "0"}
LAW, NOTES = "law", "notes"
NOTES_TEXT = """# Visitor policy

Visitors to the Lisbon office must sign in at the front desk and wear a visitor badge at all times.
The front desk of the Lisbon office opens at 08:30 on working days.

# 访客制度

访客进入里斯本办公室须在前台登记，并全程佩戴访客证。
"""
LOADING_QUESTION = "劳动合同期限三个月以上不满一年的，试用期不得超过多久？"
MAX_REQUEST_MB = 1  # the servers run with a small body limit, so the 413 test sends little


def docqa_cmd() -> list[str]:
    """The installed console script (what users run), else the module."""
    script = Path(sys.executable).with_name("docqa")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]


def docqa_env(home: Path, **extra: str) -> dict[str, str]:
    """The test environment: only our DOCQA_HOME (no user config leaks in), never the hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCQA_")}
    env.update(DOCQA_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               **extra)
    return env


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run a ``docqa`` command in this process (click's runner: the real command, minus a second
    interpreter start and model load), with DOCQA_HOME = ``home``, no other DOCQA_* setting, and
    the cwd beside ``home`` so no ./docqa.yaml is read."""
    from click.testing import CliRunner

    from service.cli import cli as docqa

    env = {k: None for k in os.environ if k.startswith("DOCQA_")} | docqa_env(home, **(env or {}))
    with contextlib.chdir(home.parent):
        return CliRunner().invoke(docqa, list(args), env=env, catch_exceptions=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DocqaServer:
    """One ``docqa serve`` subprocess. ``first_readyz`` is the first answer /readyz gave, and
    ``loading_chat`` the answer to a chat request sent right after it while still loading."""

    def __init__(self, home: Path, *serve_args: str, prefix: list[str] | None = None, env: dict | None = None):
        """``prefix``: a command that runs the server (e.g. in a private mount namespace); ``env``: further
        DOCQA_* settings of this server."""
        self.home, self.serve_args, self.prefix, self.env = home, serve_args, prefix or [], env or {}
        self.log_path = home.parent / f"serve-{'-'.join(serve_args) or 'all'}.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.first_readyz: httpx.Response | None = None
        self.loading_chat: httpx.Response | None = None

    def start(self) -> DocqaServer:
        """Spawn the process (returns at once; ``wait_ready`` waits)."""
        self.url = f"http://127.0.0.1:{(port := free_port())}"
        env = docqa_env(self.home, DOCQA_MAX_REQUEST_MB=str(MAX_REQUEST_MB), **self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*self.prefix, *docqa_cmd(), "serve", *self.serve_args, "--host", "127.0.0.1",
                                          "--port", str(port)], env=env, cwd=self.home.parent,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 240, retries: int = 2) -> DocqaServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if retries and "address already in use" in self.log().lower():  # lost the port race
                    return self.start().wait_ready(timeout, retries - 1)
                raise RuntimeError(f"docqa serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=10)
            except httpx.TransportError:
                time.sleep(0.02)
                continue
            if self.first_readyz is None:
                self.first_readyz = r
                if r.status_code == 503:
                    self.loading_chat = httpx.post(f"{self.url}/v1/chat", json={"question": LOADING_QUESTION},
                                                   timeout=10)
            if r.status_code == 200:
                return self
            if r.json().get("status") == "error":
                raise RuntimeError(f"docqa serve failed to load: {r.text}\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"docqa serve not ready after {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
