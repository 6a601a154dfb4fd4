"""The ``vllm`` backend: vLLM's engine inside this process, for a GPU machine that runs one service.

Pick it over ``openai`` + ``vllm serve`` when the service and the model share one box and one
process is simpler to run; pick ``openai`` when several services share a model server, or to
scale the two apart. The LoRA adapter (``llm_adapter``) is applied per request with a
``LoRARequest`` named ``llm_model``, exactly as ``vllm serve --lora-modules NAME=DIR`` would.

``vllm`` is an optional extra (``pip install 'docqa[vllm]'`` on a CUDA machine) and is imported only
when this backend loads. vLLM's offline ``LLM`` class has no token stream, so ``stream`` yields the
whole reply as one delta; use ``openai`` against ``vllm serve`` for token streaming.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from service.llm.base import GenParams, Health, LLMError, LLMUnavailable, Message


class VLLMLocal:
    """vLLM ``LLM`` engine (+ optional LoRA adapter) generating in-process."""

    def __init__(self, base_model: str, *, adapter: str | None = None, adapter_name: str = "docqa",
                 max_model_len: int | None = None, gpu_memory_utilization: float = 0.85):
        self.base_model, self.adapter, self.adapter_name = base_model, adapter, adapter_name
        self.max_model_len, self.gpu_memory_utilization = max_model_len, gpu_memory_utilization
        self.name = f"vllm:{base_model}" + (f"+{adapter_name}" if adapter else "")
        self._engine = self._lora = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        if self._engine is not None:
            return
        with self._lock:
            if self._engine is not None:
                return
            try:
                from vllm import LLM as Engine
                from vllm.lora.request import LoRARequest
            except ImportError as e:
                self._error = f"the vllm package is not installed ({e})"
                raise LLMUnavailable("llm_backend 'vllm' needs vLLM in this environment: pip install 'docqa[vllm]' "
                                     "on a CUDA machine, or run `vllm serve` and use llm_backend 'openai'") from e
            try:
                kw = {"enable_lora": bool(self.adapter), "gpu_memory_utilization": self.gpu_memory_utilization}
                if self.max_model_len:
                    kw["max_model_len"] = self.max_model_len
                self._engine = Engine(model=self.base_model, **kw)
                if self.adapter:
                    path = str(Path(self.adapter).expanduser().resolve())
                    self._lora = LoRARequest(self.adapter_name, 1, path)
            except Exception as e:
                self._error = f"{type(e).__name__}: {e}"
                raise LLMUnavailable(f"vLLM could not load {self.base_model!r}: {self._error}") from e

    def health(self) -> Health:
        if self._engine is not None:
            return Health(True, None, {"model": self.name})
        return Health(False, f"LLM {self.name} is not loaded" + (f": {self._error}" if self._error else " yet"))

    def generate(self, messages: list[Message], params: GenParams) -> str:
        self.warm_up()
        from vllm import SamplingParams

        sp = SamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                            repetition_penalty=params.repetition_penalty, stop=list(params.stop) or None)
        try:
            outs = self._engine.chat([messages], sp, lora_request=self._lora, use_tqdm=False)
        except Exception as e:
            raise LLMError(f"vLLM generation failed: {type(e).__name__}: {e}") from e
        return outs[0].outputs[0].text if outs and outs[0].outputs else ""

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        yield self.generate(messages, params)
