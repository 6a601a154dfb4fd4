"""Which window answers: the reader's own verdict combined with how each window was found.

Measured on the serving path (bench/reader_rank.py, the dev parts of CAIL2019, CMRC 2018 and DRCD): the shipped
reader's P(answer) alone put the window holding the answer first for .53-.77 of answerable questions, the
question's term coverage of the window alone for .69-.93 — a small reader mistakes a neighbouring window, or
another document's, that reads like an answer ("百老汇剧院指的是什么？" answered from a definition of 西班牙语言).
A logistic model over both (and the passage's retrieval rank) does better than either; its probability that the
window holds the answer is then both the ranking and the refusal score (``reader_threshold``, calibrated per KB
by ``docqa eval calibrate`` as before).

The weights belong to one reader file: ``ranker.json`` records the checksum of the reader it was fitted with,
and a reader built from another file (``docqa models reader FILE``) ranks by its own P(answer) until a ranker
is fitted for it (``python bench/reader_rank.py --fit``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHIPPED = Path(__file__).with_name("ranker.json")
log = logging.getLogger("docqa.reader")
FEATURES = ("answer_logit", "span_logp", "coverage", "top_passage", "passage_rank", "retrieval_agreement")
_RRF_K = 10  # retrieval_agreement's own constant: the feature must not move when a KB changes its rrf_k


def features(p_none: float, span_p: float, coverage: float, passage_rank: int, agreement: float = 0.0) -> list[float]:
    """One window's inputs: the reader's answer log-odds, the log probability of its best span, the question's
    term coverage of the window (0-1), whether it is from the first retrieved passage, that passage's rank, and
    how much the retrievers agree on the passage (``retrieval_agreement``)."""
    eps = 1e-6
    return [math.log(max(1.0 - p_none, eps) / max(p_none, eps)), math.log(max(span_p, 1e-4)), float(coverage),
            float(passage_rank == 0), float(passage_rank), float(agreement)]


def retrieval_agreement(hit) -> float:
    """How strongly retrieval found a passage, 0-1, from its ranks alone: 1 = first in both the dense and the
    keyword ranking (or found by the article the question names), about .5 = first in one and absent from the
    other, falling with rank. Ranks, not scores, so it means the same with any embedder and fusion setting.

    Why it is a feature: the reader's P(answer) and the question's term coverage both read a question phrased
    like its passage as better answered than one in a user's own words ("还在试用期，想走人的话得提前几天告诉
    单位？"); that both retrievers put the passage first is evidence of another kind. Left out of each dev set's
    fit in turn, the ranker with it told answerable from unanswerable questions better on every set than without
    it (docqa/reader/READER_MODEL.md, "Window ranker")."""
    if getattr(hit, "exact", False):
        return 1.0
    ranks = (getattr(hit, "dense_rank", None), getattr(hit, "lexical_rank", None))
    return sum(1.0 / (_RRF_K + r) for r in ranks if r) * (_RRF_K + 1) / 2


@dataclass(frozen=True)
class WindowRanker:
    weights: np.ndarray  # one per FEATURES
    bias: float  # shifted so that P >= .5 is the fitted operating point (reader_threshold's default)
    reader_sha256: str  # the reader file these weights were fitted with
    card: dict = field(default_factory=dict)  # how: data, figures, command

    def probabilities(self, rows: list[list[float]]) -> np.ndarray:
        z = np.asarray(rows, dtype=np.float64) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: Path = SHIPPED) -> Path:
        raw = {"features": list(FEATURES), "weights": [round(float(w), 6) for w in self.weights],
               "bias": round(float(self.bias), 6), "reader_sha256": self.reader_sha256, "card": self.card}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(raw, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def load_ranker(reader_sha256: str | None, path: Path = SHIPPED) -> WindowRanker | None:
    """The ranker fitted with the reader file of checksum ``reader_sha256``; None when there is none (or it
    belongs to another reader, or cannot be read: ranking then falls back to the reader's P(answer))."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("reader_sha256") != reader_sha256 or not reader_sha256:
            return None  # fitted with another reader file: not an error, that reader has no ranker
        weights = np.asarray(raw["weights"], dtype=np.float64)
        if raw.get("features") != list(FEATURES) or weights.shape != (len(FEATURES),) \
                or not np.isfinite(weights).all():
            raise ValueError(f"features {raw.get('features')} / {weights.shape[0]} weights, not {list(FEATURES)}")
        return WindowRanker(weights, float(raw["bias"]), raw["reader_sha256"], raw.get("card", {}))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("the reader's window ranker %s cannot be used (%s): windows are ranked by the reader's "
                    "P(answer); reinstall docqa or refit it (python bench/reader_rank.py --fit)", path, e)
        return None
