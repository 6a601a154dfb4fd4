"""``docqa eval calibrate``: the refusal threshold a KB's own questions call for.

With the reader on (the default), what refuses is the reader's P(answer) of its best window against
``reader_threshold`` (service/answering/reading.py): that probability is the record's evidence score
and the threshold calibrated; the questions the reader did not decide (a named article, quoted as is)
do not take part. Without it, the sentence support score against ``refusal_threshold``:

The extractive evidence check refuses exactly when the best supporting sentence scores below
``refusal_threshold`` (service/answering/extractive.py ``compose``), and that score does not depend
on the threshold. So one run of the set gives every row's score, and the threshold can be chosen
without re-running: the one that maximises balanced accuracy, the mean of "answerable questions
answered" and "unanswerable questions refused" (balanced, so a set with few unanswerable questions
does not simply teach the KB to answer everything). Ties go to the lower threshold (answer more).
"""

from __future__ import annotations

from docqa.errors import UserError


def balanced_accuracy(records: list[dict], threshold: float) -> tuple[float, float, float]:
    """(balanced accuracy, answered share of answerable, refused share of unanswerable) at ``threshold``."""
    ans = [r["evidence_score"] for r in records if not r["unanswerable"]]
    una = [r["evidence_score"] for r in records if r["unanswerable"]]
    answered = sum(s >= threshold for s in ans) / len(ans) if ans else 0.0
    refused = sum(s < threshold for s in una) / len(una) if una else 0.0
    return (answered + refused) / 2, answered, refused


def threshold_for(records: list[dict]) -> tuple[str, list[dict]]:
    """The setting to calibrate and the records that speak to it (see the module docstring)."""
    read = [r for r in records if r.get("basis") == "reader"]
    if read:
        return "reader_threshold", read
    return "refusal_threshold", records


def choose_threshold(records: list[dict]) -> tuple[float, tuple[float, float, float]]:
    """The threshold with the best balanced accuracy, and that accuracy (with its two parts)."""
    scored = [r for r in records if r.get("outcome") != "fallback" or r["evidence_score"] > 0]
    if not any(r["unanswerable"] for r in scored) or all(r["unanswerable"] for r in scored):
        raise UserError("calibration needs both answerable and unanswerable questions in the set "
                         "(docqa eval make --holdout makes unanswerable ones)")
    values = sorted({round(r["evidence_score"], 5) for r in scored})
    candidates = [values[0] - 1e-4] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)] + \
        [values[-1] + 1e-4]
    best = max(candidates, key=lambda t: (balanced_accuracy(scored, t)[0], -t))
    return round(best, 4), balanced_accuracy(scored, best)
