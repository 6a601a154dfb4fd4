"""`docqa models build` for the reader network's shipped files (files.py: the reader, ``reader.safetensors``, card
READER_MODEL.md; the grounding verifier, ``verifier.safetensors``, card VERIFIER_MODEL.md): the trained top layers
and heads + the e5 folder -> an int8 ONNX model under ``models_dir()/docqa-<name>``.

Verified before it is published: the shipped file's sha256 must equal the ``.sha256`` beside it (a truncated or
replaced file is named with the fix), and the int8 export must answer the fixed probes (the reader: questions with
their known spans; the verifier: claims a passage states or contradicts). Built in a temporary folder and renamed
into place, so a failed build leaves the previous one. Idempotent: same file + same encoder build -> nothing to do.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from docqa.errors import Unavailable
from docqa.reader.files import BUILD_DIR, ONNX, READER, RECORD, VERIFIER, Shipped, sha256

__all__ = ["BUILD_DIR", "CLAIM_PROBES", "PROBES", "READER", "VERIFIER", "ReaderBuildError", "build", "probe",
           "verify_shipped"]

# (question, passage, a string the answer must contain): the build checks that the int8 export answers as
# the trained reader does on questions it answers right (not a quality bar: bench/reader.py is)
PROBES = [
    ("How many days of annual leave do full-time employees get per year?",
     "Annual leave is 25 working days per calendar year for full-time staff, pro-rated for part-time staff.",
     "25 working days"),
    ("劳动者在试用期内解除劳动合同需要提前几天通知用人单位？",
     "第三十七条 劳动者提前三十日以书面形式通知用人单位，可以解除劳动合同。"
     "劳动者在试用期内提前三日通知用人单位，可以解除劳动合同。",
     "三日"),
    ("被告每月应支付多少抚养费？",
     "经审理查明：原告与被告于2011年7月离婚，约定女儿随原告生活，被告每月向原告支付生活费800元。", "800元"),
]


# A probe is failed when its span is not found, or found and dismissed (the reader's own P(answer) below this).
# Not .5: refusals are decided by the window ranker fitted for each reader file (docqa/reader/rank.py), so a
# reader's own P is a feature whose scale may move between trainings (the reader trained with terse questions
# gives the paraphrased 抚养费 / 生活费 probe .32 with the right span, and answers users better end to end).
PROBE_MIN_P = 0.25


# (claim, passage, whether the passage states it): the verifier's build checks its int8 export on these
_ART37 = ("第三十七条 劳动者提前三十日以书面形式通知用人单位，可以解除劳动合同。"
          "劳动者在试用期内提前三日通知用人单位，可以解除劳动合同。")
CLAIM_PROBES = [  # 三十日 is in the article too, for notice outside the probation period
    ("试用期内的劳动者提前三日通知用人单位，就可以解除劳动合同。", _ART37, True),
    ("试用期内的劳动者提前三十日通知用人单位，就可以解除劳动合同。", _ART37, False),
]


class ReaderBuildError(Unavailable):
    """The reader could not be built (the message says which file and how to fix it)."""


def verify_shipped(delta: Path | None = None, checksum: Path | None = None, kind: Shipped = READER) -> str:
    """The shipped file's sha256, after checking it is there and is the file the card describes."""
    delta, checksum = delta or kind.delta, checksum or kind.checksum
    fix = ("restore it (`git checkout -- docqa/reader/`, or reinstall docqa), or retrain it with the command in "
           f"{kind.card}")
    if not delta.is_file():
        raise ReaderBuildError(f"the {kind.name} file {delta} is missing: {fix}")
    digest = sha256(delta)
    want = checksum.read_text().split()[0] if checksum.is_file() else None
    if want is not None and digest != want:
        raise ReaderBuildError(f"the {kind.name} file {delta} does not match its checksum ({digest[:12]}... != "
                               f"{want[:12]}... in {checksum.name}): truncated or replaced; {fix}")
    return digest


def build(encoder_dir: Path, out: Path | None = None, delta: Path | None = None, checksum: Path | None = None,
          force: bool = False, log=print, kind: Shipped = READER) -> dict:
    """Assemble, export, quantise and verify; returns the build record (``built``: False when up to date)."""
    out = out or kind.build_dir()
    delta, checksum = delta or kind.delta, checksum or kind.checksum
    digest = verify_shipped(delta, checksum, kind)
    encoder_rec = _encoder_record(encoder_dir)
    try:
        old = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if (not force and old.get("delta_sha256") == digest and old.get("encoder_build") == encoder_rec
            and (out / ONNX).is_file()):
        return {**old, "built": False}
    t0 = time.perf_counter()
    from docqa.models.onnx_backend import _quantize
    from docqa.reader.net import export_onnx, load, read_meta

    meta = read_meta(delta)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".reader-") as tmp:
        tmp = Path(tmp)
        log(f"assembling the {kind.name} from {delta.name} and {encoder_dir.name}")
        net = load(encoder_dir, delta, attn="eager")
        export_onnx(net, tmp / "reader.onnx")
        _quantize(tmp / "reader.onnx", tmp / ONNX)
        for f in tmp.iterdir():
            if f.name.startswith("reader.onnx"):
                f.unlink()
        record = {"reader": delta.name, "task": meta.get("task", "reader"), "delta_sha256": digest,
                  "encoder": str(encoder_dir.resolve()), "encoder_build": encoder_rec, "onnx": ONNX,
                  "max_length": meta.get("max_length"), "languages": meta.get("languages"),
                  "trainable": meta.get("trainable"), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        probes = probe(tmp, encoder_dir, record) if kind is READER else probe_claims(tmp, encoder_dir, record)
        record["probes"] = probes
        record["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / RECORD).write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        tmp.mkdir()  # TemporaryDirectory removes what it made
    return {**record, "built": True}


def probe(folder: Path, encoder_dir: Path, record: dict) -> list[dict]:
    """The fixed probe questions through the int8 export: each answer must hold its known span."""
    from docqa.reader.runtime import Reader

    reader = Reader(folder / ONNX, encoder_dir, record)
    out = []
    for question, passage, want in PROBES:
        q, wins = reader.windows(question, [passage])
        best = reader.read(wins[0])[0]
        got = passage[best.start:best.end] if best.kind == "span" else best.kind
        out.append({"question": question, "answer": got, "p_answer": round(best.p_answer, 3)})
        if want not in got or best.p_answer < PROBE_MIN_P:
            raise ReaderBuildError(f"the reader built from {record['reader']} answers the probe {question!r} with "
                                   f"{got!r} (P(answer) {best.p_answer:.2f}; expected {want!r}): the file does not fit "
                                   "this encoder; retrain it with the command in docqa/reader/READER_MODEL.md")
    return out


def probe_claims(folder: Path, encoder_dir: Path, record: dict) -> list[dict]:
    """The fixed claims through the verifier's int8 export: each must be judged as its passage says."""
    from docqa.reader.grounding import ClaimVerifier
    from docqa.reader.runtime import Reader

    verifier = ClaimVerifier(Reader(folder / ONNX, encoder_dir, record))
    out = []
    for claim, passage, stated in CLAIM_PROBES:
        p = verifier.p_stated(claim, [passage])
        out.append({"claim": claim, "p_stated": round(p, 3)})
        if (p >= verifier.threshold) != stated:
            raise ReaderBuildError(f"the verifier built from {record['reader']} judges the probe claim {claim!r} "
                                   f"{'stated' if p >= verifier.threshold else 'not stated'} (P {p:.2f}) where its "
                                   f"passage {'states' if stated else 'contradicts'} it: the file does not fit this "
                                   f"encoder; retrain it with the command in {VERIFIER.card}")
    return out


def _encoder_record(encoder_dir: Path) -> dict:
    from docqa.models.e5_convert import BUILD_RECORD

    try:
        rec = json.loads((encoder_dir / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return {"path": str(encoder_dir)}
    return {k: rec.get(k) for k in ("source_sha256", "converter_version") if k in rec} or {"path": str(encoder_dir)}
