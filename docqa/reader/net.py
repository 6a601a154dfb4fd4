"""The reader network: the e5 encoder with two heads (torch; training and export only — serving runs
the int8 ONNX export, docqa/reader/runtime.py).

- span head: a start and an end logit per token (the answer is the best start..end of passage tokens);
- kind head on the first token: none (the window holds no answer), span, yes, no (CAIL's yes/no
  questions have no span).

Only the top ``trainable`` encoder layers and the heads are trained; the lower layers stay as the
e5 build has them, so what ships is those layers and heads (``save_delta``: a few MB of fp16) and
the rest comes from the e5 folder that ``docqa models build`` makes anyway. The lower layers run
without gradients (``lower``) and their output can be cached between epochs.
"""

from __future__ import annotations

import json
from pathlib import Path

KINDS = ("none", "span", "yes", "no")
FORMAT = "docqa-reader/1"


def _torch():
    import torch

    return torch


def build(model_dir: str | Path, trainable: int = 4, attn: str = "sdpa"):
    """A ReaderNet on the e5 folder ``model_dir``, heads freshly initialised (seed the caller's)."""
    torch = _torch()
    from transformers import AutoModel

    class ReaderNet(torch.nn.Module):
        def __init__(self, bert, trainable: int):
            super().__init__()
            self.bert = bert
            hidden = bert.config.hidden_size
            self.trainable = trainable
            self.span = torch.nn.Linear(hidden, 2)
            self.kind = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                                            torch.nn.Linear(hidden, len(KINDS)))
            for p in self.bert.parameters():
                p.requires_grad = False
            for layer in self.top_layers():
                for p in layer.parameters():
                    p.requires_grad = True

        def top_layers(self):
            layers = self.bert.encoder.layer
            return list(layers)[len(layers) - self.trainable:]

        def lower(self, input_ids, attention_mask):
            """Hidden states after the frozen layers (no gradients)."""
            with torch.no_grad():
                h = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
                ext = _additive(attention_mask, h.dtype)
                for layer in list(self.bert.encoder.layer)[:len(self.bert.encoder.layer) - self.trainable]:
                    h = layer(h, attention_mask=ext)
                    h = h[0] if isinstance(h, tuple) else h
            return h

        def upper(self, h, attention_mask):
            ext = _additive(attention_mask, h.dtype)
            for layer in self.top_layers():
                h = layer(h, attention_mask=ext)
                h = h[0] if isinstance(h, tuple) else h
            return self.heads(h)

        def heads(self, h):
            start, end = self.span(h).unbind(-1)
            return start, end, self.kind(h[:, 0])

        def forward(self, input_ids, attention_mask):
            return self.upper(self.lower(input_ids, attention_mask), attention_mask)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the unused pooler of the e5 folder is not the user's business
    hf_logging.disable_progress_bar()
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation=attn, add_pooling_layer=False)
    return ReaderNet(bert, trainable)


def _additive(mask, dtype):
    torch = _torch()
    return ((1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min)


def delta_state(net) -> dict:
    """What training changed: the top layers and the heads (names as in the full state dict)."""
    keep = {}
    n = len(net.bert.encoder.layer)
    prefixes = tuple(f"bert.encoder.layer.{i}." for i in range(n - net.trainable, n)) + ("span.", "kind.")
    for k, v in net.state_dict().items():
        if k.startswith(prefixes):
            keep[k] = v.detach().clone()
    return keep


def save_delta(net, path: str | Path, meta: dict) -> None:
    """The top layers and heads in fp16 safetensors, with ``meta`` (format, layers, window...) inside."""
    from safetensors.torch import save_file

    tensors = {k: v.half().contiguous() for k, v in delta_state(net).items()}
    info = {"format": FORMAT, "trainable": str(net.trainable), "meta": json.dumps(meta, ensure_ascii=False)}
    save_file(tensors, str(path), metadata=info)


def read_meta(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        info = f.metadata() or {}
    if info.get("format") != FORMAT:
        raise ValueError(f"{path} is not a docqa reader file (format {info.get('format')!r}, expected {FORMAT})")
    return {**json.loads(info.get("meta", "{}")), "trainable": int(info.get("trainable", 4))}


def load(model_dir: str | Path, delta: str | Path, attn: str = "sdpa"):
    """A ReaderNet on ``model_dir`` with the trained layers and heads of ``delta``."""
    from safetensors.torch import load_file

    meta = read_meta(delta)
    net = build(model_dir, meta["trainable"], attn)
    state = load_file(str(delta))
    missing = set(delta_state(net)) - set(state)
    if missing:
        raise ValueError(f"{delta} lacks {len(missing)} tensors (e.g. {sorted(missing)[0]}): a truncated file?")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return net.eval()


def export_onnx(net, path: str | Path) -> None:
    """The whole reader (all layers, both heads) as ONNX: input_ids, attention_mask -> start, end, kind."""
    import logging
    import warnings

    torch = _torch()

    class _Export(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            h = self.net.bert(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            return self.net.heads(h)

    ex_ids = torch.tensor([[0, 100, 200, 2, 2, 300, 400, 500, 2], [0, 100, 2, 2, 300, 2, 1, 1, 1]])
    ex_mask = (ex_ids != 1).long()
    b, s = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Export(net.eval()), (ex_ids, ex_mask), str(path), dynamo=True,
                              input_names=["input_ids", "attention_mask"], output_names=["start", "end", "kind"],
                              dynamic_shapes=({0: b, 1: s}, {0: b, 1: s}), verbose=False)
    finally:
        quiet.setLevel(level)
