"""Calibrate the compliance filter's thresholds on data: ``guard_threshold`` and ``snap_threshold``.

Guard (is a draft sentence grounded in the given passages?), sentence-level cases:
- grounded: a draft written from the gold answer — the question turned into a statement with the
  wh-word replaced by the answer span ("生命数耗完即算为踢爆"), which is how an LLM answers, never a
  verbatim quote — paired with its own passage (CMRC 2018 trial, DRCD dev, SQuAD 2.0 sample); and
  DuReader's human-written answers paired with the paragraph they were written from;
- ungrounded, three kinds: the same draft with a *wrong passage* (another article), with a
  *sibling passage* (same article, answer absent: same topic, fact missing), and a *wrong fact*
  (the answer span swapped for another question's answer from the same passage, passage kept).
Scores come from ``service.compliance.check_grounding`` itself (what production computes), and
alternatives (cosine only, overlap only) are scored on the same cases for comparison.

Snap: paraphrases of approved replies (bench/data/compliance_snap_cases.jsonl, written for this)
must land on their reply; unrelated drafts (real answer sentences from the corpora, and
hand-written near misses) must not land anywhere. Scores come from ``ApprovedLibrary.best``.

Each threshold is chosen to maximise balanced accuracy ((TPR + TNR) / 2). Figures are printed and
written to bench/reports/compliance_calibration.md next to the defaults in docqa/settings/parts.py.

    HF_HUB_OFFLINE=1 python bench/calibrate_compliance.py [--per-set 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
REPORT = REPO / "bench" / "reports" / "compliance_calibration.md"
SNAP_CASES = REPO / "bench" / "data" / "compliance_snap_cases.jsonl"
@dataclass
class Case:
    draft: str
    passages: list[str]
    grounded: bool
    kind: str  # grounded | wrong_passage | sibling_passage | wrong_fact (number/entity | other span)
    dataset: str


class CachedEmbedder:
    """Wraps an Embedder; each distinct text is encoded once over the whole bench."""

    def __init__(self, inner):
        self.inner, self.cache = inner, {}

    def encode_docs(self, texts: list[str], **_) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for t, v in zip(todo, self.inner.encode_docs(todo), strict=True):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    encode_queries = encode_docs

    def prime(self, texts: list[str]) -> None:
        todo = [t for t in texts if t not in self.cache]
        for t, v in zip(todo, self.inner.encode_docs(todo, show_progress=True), strict=True):
            self.cache[t] = v


def squad_items(path: Path, lang: str, part: str = "all") -> list[dict]:
    """Answerable questions of the articles in ``part`` of docqa's split (finetune/reader/data.py: neither the
    reader nor the grounding verifier trained on the test part)."""
    from finetune.reader.data import part_of

    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for ai, art in enumerate(data):
        own = str(art.get("caseid") or art.get("id") or art.get("title") or ai)
        if part != "all" and part_of(f"{path.name}:{own}") != part:
            continue
        for pi, par in enumerate(art["paragraphs"]):
            for qa in par["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    continue
                ans = qa["answers"][0]["text"].strip()
                if 0 < len(ans) <= 40:
                    out.append({"art": ai, "par": pi, "context": par["context"], "question": qa["question"],
                                "answer": ans, "lang": lang})
    return out


def _swap_kind(swap: str) -> str:
    """wrong_fact cases split by what was swapped in: a number, date, amount or named entity (what
    the guard's fact check compares) or any other span (a phrase, a description)."""
    from docqa.text.facts import entities, numbers

    return "wrong_fact (number/entity)" if numbers(swap) or entities(swap) else "wrong_fact (other span)"


def statement(question: str, answer: str, lang: str) -> str:
    """The question turned into the answer statement an LLM would write (the verifier's training claims are made
    by the same rule, from other articles: finetune/reader/grounding.py)."""
    from finetune.reader.grounding import statement as make

    return make(question, answer, lang)


def squad_cases(items: list[dict], name: str, n: int, rng: random.Random) -> list[Case]:
    by_art: dict[int, list[dict]] = {}
    for it in items:
        by_art.setdefault(it["art"], []).append(it)
    cases: list[Case] = []
    for it in rng.sample(items, min(n, len(items))):
        draft = statement(it["question"], it["answer"], it["lang"])
        cases.append(Case(draft, [it["context"]], True, "grounded", name))
        others = [x for x in items if x["art"] != it["art"]]  # one-article sets: any passage without the answer
        others = others or [x for x in items if x["par"] != it["par"] and it["answer"] not in x["context"]]
        if others:
            cases.append(Case(draft, [rng.choice(others)["context"]], False, "wrong_passage", name))
        sib = [x["context"] for x in by_art[it["art"]] if x["par"] != it["par"] and it["answer"] not in x["context"]]
        if sib:
            cases.append(Case(draft, [rng.choice(sib)], False, "sibling_passage", name))
        swaps = [x["answer"] for x in by_art[it["art"]]
                 if x["answer"] not in it["answer"] and it["answer"] not in x["answer"]]
        if swaps:
            swap = rng.choice(swaps)
            wrong = statement(it["question"], swap, it["lang"])
            cases.append(Case(wrong, [it["context"]], False, _swap_kind(swap), name))
    return cases


def dureader_cases(path: Path, n: int, rng: random.Random) -> list[Case]:
    items = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        d = json.loads(line)
        if not d.get("answers") or not d.get("answer_docs"):
            continue
        doc = d["documents"][d["answer_docs"][0]]
        para = doc["paragraphs"][doc.get("most_related_para", 0)]
        ans = d["answers"][0].strip()
        if 4 <= len(ans) <= 200 and len(para) >= 10:
            items.append((ans, para))
    cases = []
    for i, (ans, para) in enumerate(items[:n]):
        cases.append(Case(ans, [para], True, "grounded", "dureader"))
        j = rng.choice([k for k in range(len(items)) if k != i])
        cases.append(Case(ans, [items[j][1]], False, "wrong_passage", "dureader"))
    return cases


def best_threshold(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float, float, float]:
    """(threshold, balanced accuracy, TPR, TNR) maximising balanced accuracy; score >= t is positive."""
    cands = np.unique(np.concatenate([pos, neg]))
    best = (0.0, -1.0, 0.0, 0.0)
    for t in cands:
        tpr, tnr = float((pos >= t).mean()), float((neg < t).mean())
        ba = (tpr + tnr) / 2
        if ba > best[1] + 1e-9:
            best = (float(t), ba, tpr, tnr)
    lo = cands[cands < best[0]]  # put the cut midway between the two scores it separates
    t = (best[0] + float(lo.max())) / 2 if len(lo) else best[0]
    return round(t, 4), best[1], best[2], best[3]


def rates_at(pos: np.ndarray, neg: np.ndarray, t: float) -> tuple[float, float, float]:
    tpr, tnr = float((pos >= t).mean()), float((neg < t).mean())
    return (tpr + tnr) / 2, tpr, tnr


VERIFIED = "rules, then the trained verifier: confirmed passes, contradicted fails (guard_verifier: true)"
ALONE = "the trained verifier alone where it reads (Chinese): P(stated); quotes pass; rules for the rest"


def guard_scores(cases: list[Case], emb, verifier=None) -> dict[str, np.ndarray]:
    """Per case, the lowest sentence score of the draft (what decides the verdict), per scorer."""
    from tqdm import tqdm

    from docqa.text.citations import strip_citations
    from service.compliance.guard import check_grounding, draft_sentences, evidence_sentences, overlap

    texts = {strip_citations(t) for c in cases for t in draft_sentences(c.draft)} | {c.draft for c in cases}
    texts |= {t for c in cases for t in evidence_sentences(dict(enumerate(c.passages, 1)))}
    emb.prime(sorted(texts))  # one batched pass: per-case calls then hit the cache
    prod, plain, lex, hyb, ver, alone = [], [], [], [], [], []
    for c in tqdm(cases, desc="guard cases", unit="case"):
        rep = check_grounding(c.draft, c.passages, emb, threshold=2.0)
        if verifier is not None:  # the verdict with the reader's fact check: confirmed 1, contradicted -1
            vrep = check_grounding(c.draft, c.passages, emb, threshold=2.0, verifier=verifier)
            ver.append(min((-1.0 if s.contradiction or s.bad_citations else 1.0 if s.verified == "confirmed"
                            else -1.0 if s.missing_facts else s.score) for s in vrep.checked) if vrep.checked
                       else 0.0)
            # the verifier alone decides what it reads (Chinese sentences that are not quotes); the rules the rest
            alone.append(min((-1.0 if s.bad_citations else 1.0 if s.verbatim else s.p_stated
                              if s.p_stated is not None else -1.0 if s.missing_facts else s.score)
                             for s in vrep.checked) if vrep.checked else 0.0)
        low = min((s.score for s in rep.checked), default=0.0)
        plain.append(low)
        # the guard's verdict: a sentence stating a fact its evidence lacks fails at any threshold
        prod.append(low if not any(s.missing_facts for s in rep.checked) else -1.0)
        ev = evidence_sentences(dict(enumerate(c.passages, 1)))
        sents = [strip_citations(s.text) for s in rep.checked] or [c.draft]
        cos = emb.encode_docs(sents) @ emb.encode_docs(ev).T
        ov = np.array([[overlap(s, e) for e in ev] for s in sents])
        lex.append(float(ov.max(axis=1).min()))
        hyb.append(float(cos.max(axis=1).min()))
    out = {VERIFIED: np.array(ver), ALONE: np.array(alone)} if ver else {}
    return {**out, "0.5 cosine + 0.5 overlap + facts (production)": np.array(prod),
            "0.5 cosine + 0.5 overlap, no fact check": np.array(plain), "lexical overlap only": np.array(lex),
            "cosine only": np.array(hyb)}


class TimedVerifier:
    """The verifier with the CPU time of each sentence it reads (process time: both cores' work counts)."""

    def __init__(self, inner):
        self.inner, self.cpu_ms = inner, []

    def check(self, sentence, passages):
        t = time.process_time()
        out = self.inner.check(sentence, passages)
        if out.p is not None:  # read (not skipped for its language)
            self.cpu_ms.append((time.process_time() - t) * 1000)
        return out


def run_guard(cases: list[Case], emb, default: float, verifier=None) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    timed = TimedVerifier(verifier) if verifier is not None else None
    scores = guard_scores(cases, emb, timed)
    secs = time.perf_counter() - t0
    truth = np.array([c.grounded for c in cases])
    ms = timed.cpu_ms if timed else []
    cost = (f"; the verifier read {len(ms)} sentences, CPU-ms per sentence p50 {np.median(ms):.1f}, "
            f"p95 {np.percentile(ms, 95):.1f}" if ms else "")
    lines = [f"{len(cases)} cases ({int(truth.sum())} grounded), scored in {secs:.1f}s{cost}", "",
             "| scorer | best threshold | balanced acc. | TPR | TNR | BA at default |",
             "|---|---:|---:|---:|---:|---:|"]
    chosen = 0.0
    for name, s in scores.items():
        t, ba, tpr, tnr = best_threshold(s[truth], s[~truth])
        at_default = f"{rates_at(s[truth], s[~truth], default)[0]:.3f}" if "production" in name else "-"
        lines.append(f"| {name} | {t:.4f} | {ba:.3f} | {tpr:.3f} | {tnr:.3f} | {at_default} |")
        if "production" in name:
            chosen = t
    # the verdicts at the default threshold, per dataset and kind: with the verifier, before (the rules
    # alone) and after (the rules and the reader's fact check), measured on the same cases
    prod = next(n for n in scores if "production" in n)
    cols = [prod, VERIFIED, ALONE] if verifier is not None else [prod]
    heads = ["rules", "rules + verifier", "verifier alone"] if verifier is not None else ["judged grounded"]
    lines += ["", f"Share judged grounded at the default threshold {default}, by dataset and case kind:", "",
              "| dataset | kind | cases | " + " | ".join(heads) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    for ds in sorted({c.dataset for c in cases}):
        for kind in ("grounded", "wrong_passage", "sibling_passage", "wrong_fact (number/entity)",
                     "wrong_fact (other span)"):
            idx = [i for i, c in enumerate(cases) if c.dataset == ds and c.kind == kind]
            if idx:
                shares = [f"{float((scores[n][idx] >= default).mean()):.3f}" for n in cols]
                lines.append(f"| {ds} | {kind} | {len(idx)} | " + " | ".join(shares) + " |")
    return lines, chosen


def run_snap(emb, extra_negatives: list[str], default: float) -> tuple[list[str], float]:
    from docqa.text.language import Lang, lang_of
    from service.compliance.filter import DEFAULT_DIR
    from service.compliance.snap import ApprovedLibrary

    lib = ApprovedLibrary.load(DEFAULT_DIR, emb)
    cases = [json.loads(x) for x in SNAP_CASES.read_text(encoding="utf-8").split("\n") if x.strip()]
    cases += [{"draft": d, "stage": "consult", "lang": lang_of(d).value, "expect": None} for d in extra_negatives]
    pos, neg, wrong_pick = [], [], 0
    for c in cases:
        m = lib.best(c["draft"], Lang(c["lang"]), c["stage"])
        if c["expect"]:
            ok = m.reply is not None and m.reply.id == c["expect"]
            wrong_pick += not ok
            pos.append(m.score if ok else -1.0)  # a paraphrase that lands on the wrong reply is a miss
        else:
            neg.append(m.score)
    p, n = np.array(pos), np.array(neg)
    t, ba, tpr, tnr = best_threshold(p, n)
    d_ba, d_tpr, d_tnr = rates_at(p, n, default)
    lines = [f"{len(p)} paraphrases of approved replies, {len(n)} unrelated drafts "
             f"({len(n) - len(extra_negatives)} hand-written near misses, {len(extra_negatives)} corpus sentences); "
             f"{wrong_pick} paraphrase(s) closest to the wrong reply.", "",
             "| threshold | balanced acc. | TPR | TNR |", "|---|---:|---:|---:|",
             f"| calibrated {t:.4f} | {ba:.3f} | {tpr:.3f} | {tnr:.3f} |",
             f"| default {default:.4f} | {d_ba:.3f} | {d_tpr:.3f} | {d_tnr:.3f} |", "",
             f"Similarity of paraphrases (right reply): min {p[p >= 0].min():.3f}, median {np.median(p[p >= 0]):.3f}; "
             f"of unrelated drafts: median {np.median(n):.3f}, max {n.max():.3f}."]
    return lines, t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-set", type=int, default=150, help="questions sampled per QA dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", default="test", choices=["test", "dev", "all"],
                    help="CMRC / DRCD articles of this part of docqa's split (the reader trained on the train part; "
                         "the SQuAD 2.0 sample is one article, in the train part: it is used whole, and says so)")
    ap.add_argument("--no-verifier", action="store_true", help="leave the trained grounding verifier out")
    ap.add_argument("--verifier", default=None, help="a verifier build folder (`docqa models reader FILE`; default: "
                    "the shipped one)")
    args = ap.parse_args()
    files = {"cmrc": DATA / "cmrc2018" / "squad-style-data_cmrc2018_trial.json",
             "drcd": DATA / "drcd" / "DRCD_dev.json",
             "squad2": DATA / "squad2_dev_sample" / "dev-v2.0.json",
             "dureader": DATA / "dureader2_demo" / "search.dev.json"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        print(f"data not available: {', '.join(missing)}", file=sys.stderr)
        return 2
    from docqa.models.embedder import Embedder
    from docqa.settings import Settings
    from docqa.text.sentences import split_sentences

    defaults = Settings.model_fields
    rng = random.Random(args.seed)
    emb = CachedEmbedder(Embedder(defaults["embed_model"].default))
    cases: list[Case] = []
    negatives: list[str] = []
    for name, lang in (("cmrc", "zh"), ("drcd", "zh"), ("squad2", "en")):
        items = squad_items(files[name], lang, args.part if name != "squad2" else "all")
        cases += squad_cases(items, name, args.per_set, rng)
        negatives += [s for it in rng.sample(items, 10) for s in split_sentences(it["context"])[:1]]
    cases += dureader_cases(files["dureader"], args.per_set, rng)
    g_default, s_default = defaults["guard_threshold"].default, defaults["snap_threshold"].default
    verifier = None
    if not args.no_verifier:
        from docqa.reader.grounding import ClaimVerifier
        from docqa.reader.runtime import ReaderUnavailable, load_verifier

        try:
            verifier = ClaimVerifier(load_verifier(args.verifier))
        except ReaderUnavailable as e:
            print(f"without the verifier: {e}", file=sys.stderr)
    verifier_name = (verifier.model.record.get("reader", "?") + " " + verifier.model.record.get("delta_sha256", "")[:12]
                     if verifier is not None else "none")
    g_lines, g_t = run_guard(cases, emb, g_default, verifier)
    s_lines, s_t = run_snap(emb, negatives, s_default)
    report = ["# Compliance filter calibration", "",
              f"Embedder: `{defaults['embed_model'].default}`. Rerun after changing it: "
              "`HF_HUB_OFFLINE=1 python bench/calibrate_compliance.py`"
              f" (--per-set {args.per_set} --seed {args.seed} --part {args.part}).", "",
              f"CMRC 2018 trial and DRCD dev cases come from the **{args.part}** part of docqa's split by article "
              "(the grounding verifier never trained on the test part: docqa/reader/VERIFIER_MODEL.md); SQuAD 2.0's "
              "sample and the DuReader demo are not in its training data (it trained on Chinese claims only and "
              "leaves English sentences to the rules).", "",
              f"Verifier: `{verifier_name}`.", "",
              "| setting | calibrated | default in docqa/settings/parts.py |", "|---|---:|---:|",
              f"| guard_threshold | {g_t:.4f} | {g_default} |", f"| snap_threshold | {s_t:.4f} | {s_default} |", "",
              "## guard_threshold", "", *g_lines, "", "## snap_threshold", "", *s_lines, ""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))
    print(f"report written to {REPORT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
