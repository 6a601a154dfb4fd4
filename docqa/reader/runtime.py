"""The reader as served: the int8 ONNX export `docqa models build` made (docqa/reader/build.py), run by
onnxruntime on a few windows per question.

``load_reader()`` returns the process's one Reader or raises ``ReaderUnavailable`` with the reason
and the command that fixes it (not built, built from another reader file, a file that fails to load);
answering then falls back to quoting the best-supported sentences and says so in ``warnings``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from docqa.errors import Unavailable
from docqa.reader.decode import Reading, read_all
from docqa.reader.windows import MAX_LENGTH, Tokens, Window, batch, windows


class ReaderUnavailable(Unavailable):
    """The reader cannot be used (the reason and the fix are the message)."""


class Reader:
    def __init__(self, onnx_path: Path, encoder_dir: Path, record: dict):
        from docqa.models.onnx_backend import cpu_session

        self.record = record
        self.name = record.get("reader", str(onnx_path))
        self.tokens = Tokens(encoder_dir)
        # a question's few windows: one thread per run, as many runs as cores (the encoder's rule,
        # docqa/models/onnx_backend.py: concurrent requests must not each start every core)
        self.session = cpu_session(onnx_path, 1)
        from docqa.reader.rank import load_ranker

        self.ranker = load_ranker(record.get("delta_sha256"))  # None: rank windows by the reader's P(answer)
        self._slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))

    def windows(self, question: str, texts: list[str], max_length: int = MAX_LENGTH
                ) -> tuple[list[int], list[list[Window]]]:
        """The question's tokens and every window of each text (``max_length`` tokens each)."""
        q = self.tokens.question(question)
        out = []
        for i, t in enumerate(texts):
            ids, offs = self.tokens.passage(t)
            out.append(windows(q, ids, offs, i, max_length=max_length))
        return q, out

    def logits(self, wins: list[Window]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids, mask = batch(wins)
        with self._slots:
            start, end, kind = self.session.run(["start", "end", "kind"], {"input_ids": ids, "attention_mask": mask})
        return start, end, kind

    def read(self, wins: list[Window], texts: list[str] | None = None) -> list[Reading]:
        """Every window's reading, most likely to hold the answer first (``texts``: the passages, by
        ``Window.passage``, so spans stay within a sentence)."""
        if not wins:
            return []
        return read_all(*self.logits(wins), wins, texts)


def load_reader(model: str | None = None) -> Reader:
    """The reader (``model``: None for the one `docqa models build` assembled from the shipped file, or
    the path of another reader file's build folder), loaded once per process."""
    from docqa.models.cache import MODELS
    from docqa.reader.files import READER

    return MODELS.get("reader", model, lambda: _load(model, READER))


def load_verifier(model: str | None = None) -> Reader:
    """The grounding verifier's network (docqa/reader/grounding.py; ``model`` as for ``load_reader``), loaded once
    per process; docqa/reader/grounding.py ``ClaimVerifier`` reads claims with it."""
    from docqa.models.cache import MODELS
    from docqa.reader.files import VERIFIER

    return MODELS.get("verifier", model, lambda: _load(model, VERIFIER))


def _load(model: str | None, kind=None) -> Reader:
    from docqa.reader.files import READER, RECORD

    kind = kind or READER
    folder = Path(model) if model else kind.build_dir()
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ReaderUnavailable(f"the {kind.name} is not built at {folder}: run `docqa models build`") from None
    if model is None:
        check_built(record, kind.delta, kind.name)
    try:
        return Reader(folder / record["onnx"], Path(record["encoder"]), record)
    except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
        raise ReaderUnavailable(f"the {kind.name} at {folder} could not be loaded ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200] if str(e) else ''}): run `docqa models build "
                                "--force`") from None


def check_built(record: dict, delta: Path | None = None, name: str = "reader") -> None:
    """Raise ReaderUnavailable when the built model is not the one the shipped file makes."""
    from docqa.reader.files import SHIPPED, sha256

    delta = delta or SHIPPED
    try:
        digest = sha256(delta)
    except OSError:
        raise ReaderUnavailable(f"the {name} file {delta} is missing: run `docqa models build` for the "
                                "reason and the fix") from None
    if record.get("delta_sha256") != digest:
        raise ReaderUnavailable(f"the built {name} was made from another {name} file than the installed one: run "
                                "`docqa models build`")
