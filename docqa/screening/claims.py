"""The claim check: does a sentence MAKE a forbidden claim, however it is worded?

The blocklist knows a claim's spellings ("稳赚不赔", "保证收益"); a paraphrase ("绝不亏本、收益有保证",
"returns are assured and you will never lose money") shares none of them. The claim check reads
meaning: each sentence of a draft, and each clause of it, is encoded by the e5 encoder and scored by a
logistic classifier trained on the forbidden claims of ``claims.yaml`` against disclaimers and clean
text (``docqa finetune claims``; raw cosine similarity cannot do this: clean finance sentences sit as
close to the claims as paraphrases do). Its weights, threshold and the encoder they belong to are in
``claims_model.json`` of the compliance directory, with a model card beside it (CLAIMS_MODEL.md).

A directory without ``claims_model.json`` has no claim check (the blocklist still applies). A model
whose encoder cannot be loaded is an error at start-up, never a check that silently passes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docqa.errors import UserError
from docqa.screening.negation import disclaims
from docqa.text.citations import strip_citations
from docqa.text.language import lang_of
from docqa.text.sentences import split_sentences

MODEL_FILE = "claims_model.json"
CLAIMS_FILE = "claims.yaml"
_CLAUSE_SPLIT = re.compile(r"[，,；;：:、]\s*")

MIN_CLAUSE_CHARS = 4


class ClaimModelError(UserError):
    """A claims_model.json that cannot be used (malformed, wrong dimension)."""


@dataclass(frozen=True)
class ClaimHit:
    claim: str  # the claim's id in claims.yaml
    name: str  # its name, for the audit log
    text: str  # the sentence or clause that makes it
    score: float  # the classifier's probability

    def describe(self) -> str:
        return f"claim check: {self.text!r} reads as {self.name} (p={self.score:.2f})"


def pieces(text: str) -> list[str]:
    """What the check scores: each sentence, and each clause of a sentence with several; citation markers
    ("[1]") are not part of a claim (and a quoted sentence without them is the passage's own sentence)."""
    out: list[str] = []
    for sentence in split_sentences(strip_citations(text)):
        s = sentence.strip()
        if not s:
            continue
        out.append(s)
        clauses = _CLAUSE_SPLIT.split(s)
        if len(clauses) > 1:  # "总之，对方必然败诉。": the clause is read on its own too
            out += [c.strip() for c in clauses if len(c.strip()) >= MIN_CLAUSE_CHARS]
    return out


@dataclass
class ClaimModel:
    encoder: str  # the encoder the weights belong to (name or folder)
    backend: str  # its embed_backend at training time
    weights: np.ndarray  # (dim,)
    bias: float
    threshold: float  # probability at or above which a piece makes a claim
    thresholds: dict[str, float]  # ... per language of the piece ("zh", "en"), where calibrated apart
    centroids: dict[str, np.ndarray]  # claim id -> mean of its examples' vectors (which claim a hit is)
    names: dict[str, str]  # claim id -> name
    card: dict  # what training recorded (data, figures, command, seed)

    @classmethod
    def load(cls, directory: Path) -> ClaimModel | None:
        path = directory / MODEL_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            weights = np.asarray(raw["weights"], dtype=np.float32)
            centroids = {k: np.asarray(v, dtype=np.float32) for k, v in raw["centroids"].items()}
            model = cls(raw["encoder"], raw.get("backend", "torch"), weights, float(raw["bias"]),
                        float(raw["threshold"]), {k: float(v) for k, v in raw.get("thresholds", {}).items()},
                        centroids, dict(raw.get("names", {})), raw.get("card", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ClaimModelError(f"{path}: not a usable claim model ({e}); retrain it with `docqa finetune "
                                  "claims` or remove it") from None
        if any(c.shape != weights.shape for c in centroids.values()):
            raise ClaimModelError(f"{path}: centroids and weights differ in dimension")
        return model

    def save(self, directory: Path) -> Path:
        path = directory / MODEL_FILE
        raw = {"encoder": self.encoder, "backend": self.backend, "threshold": round(self.threshold, 6),
               "thresholds": {k: round(v, 6) for k, v in self.thresholds.items()},
               "bias": float(self.bias), "names": self.names, "card": self.card,
               "weights": [round(float(x), 7) for x in self.weights],
               "centroids": {k: [round(float(x), 6) for x in v] for k, v in self.centroids.items()}}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(raw, ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    def encoded_by(self, model: str, backend) -> bool:
        """Whether vectors of encoder ``model`` on ``backend`` are the ones these weights read."""
        return self.encoder == model and self.backend == getattr(backend, "value", backend)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(vectors @ self.weights + self.bias)))

    def threshold_for(self, piece: str) -> float:
        return self.thresholds.get(lang_of(piece).value, self.threshold)

    def claim_of(self, vector: np.ndarray) -> str:
        return max(self.centroids, key=lambda k: float(vector @ self.centroids[k]))


class ClaimCheck:
    """A claim model with its encoder: ``find(text)`` -> the strongest claim made, or None."""

    def __init__(self, model: ClaimModel, embedder):
        if embedder.dim != model.weights.shape[0]:
            raise ClaimModelError(f"the claim model was trained on {model.encoder} ({model.weights.shape[0]} "
                                  f"dimensions); the encoder given has {embedder.dim}")
        self.model, self.embedder = model, embedder

    def scores(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        return self.model.probabilities(self.embedder.encode_docs(texts))

    def find(self, text: str, known: Mapping[str, np.ndarray] | None = None) -> ClaimHit | None:
        """``known``: vectors this encoder already gave some texts (``ClaimCheck.reuses``): the sentences a
        KB stored at ingest for the passages an answer quotes (docqa/kb/evidence.py), so a quoted sentence
        is not encoded again; the other pieces are."""
        parts = [p for p in pieces(text) if not disclaims(p)]
        if not parts:
            return None
        vectors = self._vectors(parts, known or {})
        margins = self.model.probabilities(vectors) - np.array([self.model.threshold_for(p) for p in parts])
        best = int(np.argmax(margins))
        if margins[best] < 0:
            return None
        probs = self.model.probabilities(vectors)
        claim = self.model.claim_of(vectors[best])
        return ClaimHit(claim, self.model.names.get(claim, claim), parts[best], float(probs[best]))

    def reuses(self, embedder) -> bool:
        """Whether vectors of ``embedder`` (a KB's) are this check's own: the same model on the same backend."""
        return self.model.encoded_by(embedder.model_name, embedder.backend) \
            and self.embedder.backend == embedder.backend  # not fallen back to another one at load

    def _vectors(self, parts: list[str], known: Mapping[str, np.ndarray]) -> np.ndarray:
        todo = [p for p in parts if p not in known]
        fresh = dict(zip(todo, self.embedder.encode_docs(todo), strict=True)) if todo else {}
        return np.stack([known[p] if p in known else fresh[p] for p in parts]).astype(np.float32)


def reads_kb_vectors(settings, kb: str) -> bool:
    """Whether KB ``kb``'s answers go through a claim check whose encoder is the KB's own (so ingestion
    stores the vectors of its sentences' clauses for it: docqa/kb/evidence.py). A model file that cannot
    be read says no here; the server names the problem when it loads the filter."""
    from docqa.screening import compliance_dir
    from docqa.settings import ComplianceMode

    s = settings.compliance_for(kb)
    if ComplianceMode(s.compliance) is ComplianceMode.OFF or not s.claim_check:
        return False
    try:
        model = ClaimModel.load(compliance_dir(s))
    except ClaimModelError:
        return False
    return model is not None and model.encoded_by(s.embed_model, s.embed_backend)


def load_claim_check(directory: Path, device: str = "cpu") -> ClaimCheck | None:
    """The claim check of a compliance directory (None without claims_model.json), with the encoder its
    model was trained on, shared with any KB that loads the same one."""
    model = ClaimModel.load(directory)
    if model is None:
        return None
    from docqa.models.embedder import shared_embedder

    return ClaimCheck(model, shared_embedder(model.encoder, device, backend=model.backend))
