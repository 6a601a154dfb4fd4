"""Fit and measure the reader's window ranker (docqa/reader/rank.py) on the serving path's own windows.

For each set's *dev* part (CAIL2019 dev, CMRC 2018 trial, DRCD dev and, with ``--laws``, the statute
questions; split by case/article as the reader's training split them, so the reader never trained on these)
a KB is built as bench/reader.py builds it (every 5th case/article left out: its questions are unanswerable),
each question is retrieved and its windows read exactly as ``/v1/chat`` reads them (the built int8 reader,
``reader_windows`` x ``reader_window_tokens``). Each window gets the ranker's features and a label (it holds a
gold answer; for yes / no questions, it is from the question's own passage).

A logistic regression over the windows (each set weighted equally, classes balanced) gives the weights; the
operating point is the probability threshold with the best mean answerability balanced accuracy over the sets,
folded into the bias so that ``reader_threshold``'s default (.5) is that point. Reported per set: how often the
first-ranked window holds the answer (the reader's P(answer) alone, coverage alone, the ranker), and the
answerability balanced accuracy of the reader's P(answer) at .5 and of the ranker at its operating point —
in-sample and leaving each set out of the fit (how it does on a kind of text it was not fitted on).

    python bench/reader_rank.py --laws /path/laws_questions.json [--fit]   # --fit writes docqa/reader/ranker.json
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import REPORTS, Passage, bench_settings, build_kb, machine_line, md_table, temp_home  # noqa: E402
from bench.reader import SETS, SHARED, sets_ready  # noqa: E402

THRESHOLDS = np.round(np.arange(0.2, 0.91, 0.025), 3)


def windows_of(name: str, part: str, limit: int, reader, settings) -> list[dict]:
    """The questions of one set's part with their served windows: features, labels and what was read."""
    from finetune.reader.data import read_squad

    path = Path(SETS[name]) if Path(SETS[name]).is_absolute() else SHARED / SETS[name]
    qs = read_squad(path, part)
    groups = sorted({q.group for q in qs})
    held = set(groups[::5])
    passages, seen = [], {}
    for q in qs:
        if q.group not in held and q.context not in seen:
            seen[q.context] = f"{name}-{len(seen)}"
            passages.append(Passage(seen[q.context], q.group.split(":", 1)[1], q.context))
    if limit and len(qs) > limit:
        qs = [qs[int(i * len(qs) / limit)] for i in range(limit)]
    kb, _ = build_kb(passages, f"rank-{name}", settings, progress=False)
    out = []
    for q in qs:
        answerable = q.group not in held and q.kind != "none"
        golds = [t.strip() for _, t in q.answers]

        def label(text: str, hit, q=q, answerable=answerable) -> int:
            if not answerable:
                return 0
            if q.kind == "span":
                return int(any(t in text for _, t in q.answers))
            return int(text in q.context)  # yes / no: the window is from the question's own passage

        rec = read_question(kb, q.question, reader, settings, label, golds)
        if rec is not None:
            out.append({"answerable": answerable, **rec})
    return out


def user_windows(laws: Path, reader, settings) -> list[dict]:
    """The user-phrased statute questions of bench/data/statute_user_questions_dev.jsonl over their six statutes
    (ingested as the product ingests them): a window is labelled when it is from the question's article and,
    where the question has short answers, holds one."""
    from bench.statute_answers import DEV_QUESTIONS, read_jsonl
    from docqa.kb import KnowledgeBase
    from ingest.pipeline import ingest_paths

    qs = read_jsonl(DEV_QUESTIONS)
    report = ingest_paths(sorted({laws / q["law"] for q in qs if q["law"]}), "rank-user-dev", settings,
                          progress=False)
    if report.failures:
        raise SystemExit(f"ingest failed: {report.failures}")
    kb = KnowledgeBase.open("rank-user-dev", settings)
    out = []
    for q in qs:
        def label(text: str, hit, q=q) -> int:
            if q["unanswerable"] or Path(hit.source).name != q["law"] or not hit.text.startswith(q["label"]):
                return 0
            return int(not q["answers"] or any(a in text for a in q["answers"]))

        rec = read_question(kb, q["question"], reader, settings, label, q["answers"])
        if rec is not None:
            out.append({"answerable": not q["unanswerable"], **rec})
    return out


def read_question(kb, question: str, reader, settings, label, golds: list[str]) -> dict | None:
    """One question retrieved and its windows read as ``/v1/chat`` reads them, each with its features and
    ``label(window text, hit)``; None when nothing was retrieved."""
    from docqa.reader.decode import read_all
    from docqa.reader.rank import features, retrieval_agreement
    from docqa.search import search
    from docqa.text.coverage import coverages
    from service.answering.reading import pick_windows, reading_text

    hits = search(kb, question, settings.answer_k)
    texts = [reading_text(h.text) for h in hits[:settings.reader_windows]]
    wins = pick_windows(reader, question, texts, settings.reader_windows, settings.reader_window_tokens)
    if not wins:
        return None
    readings = sorted(read_all(*reader.logits(wins), wins, texts), key=lambda r: r.window)
    cov = coverages(question, [texts[w.passage][w.text_start:w.text_end] for w in wins])
    rows = []
    for r, w, c in zip(readings, wins, cov, strict=True):
        text = texts[w.passage][w.text_start:w.text_end]
        span = texts[w.passage][r.start:r.end].strip() if r.kind == "span" and r.start >= 0 else None
        hit = hits[w.passage]
        rows.append({"x": features(r.p_kinds["none"], r.span_score, float(c), w.passage, retrieval_agreement(hit)),
                     "label": label(text, hit), "p_reader": r.p_reader, "cov": float(c), "span_p": r.span_score,
                     "em": None if span is None or not golds else int(span in golds),
                     "contains": None if span is None or not golds else int(any(
                         g in span or (span and span in g and len(span) >= 0.5 * len(g)) for g in golds))})
    return {"windows": rows}


def fit(sets: dict[str, list[dict]]):
    from sklearn.linear_model import LogisticRegression

    X, y, sw = [], [], []
    for recs in sets.values():
        rows = [w for r in recs for w in r["windows"]]
        for w in rows:
            X.append(w["x"])
            y.append(w["label"])
            sw.append(1.0 / len(rows))
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    clf.fit(np.array(X), np.array(y), sample_weight=np.array(sw) * len(sw) / len(sets))
    return clf.coef_[0].astype(np.float64), float(clf.intercept_[0])


def question_scores(recs: list[dict], score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(winner holds gold per answerable question, best score of answerable ones, best score of unanswerable)."""
    gold, pa, pu = [], [], []
    for r in recs:
        s = [score(w) for w in r["windows"]]
        k = int(np.argmax(s))
        if r["answerable"]:
            gold.append(r["windows"][k]["label"])
            pa.append(s[k])
        else:
            pu.append(s[k])
    return np.array(gold, dtype=float), np.array(pa), np.array(pu)


def balanced(pa: np.ndarray, pu: np.ndarray, t: float) -> float:
    parts = [np.mean(pa >= t)] + ([np.mean(pu < t)] if len(pu) else [])
    return float(np.mean(parts))


def prob(weights, bias):
    return lambda w: 1.0 / (1.0 + math.exp(-(float(np.dot(weights, w["x"])) + bias)))


def operating_point(sets: dict[str, list[dict]], weights, bias) -> float:
    scored = [question_scores(recs, prob(weights, bias))[1:] for recs in sets.values()]
    return float(max(THRESHOLDS, key=lambda t: np.mean([balanced(pa, pu, t) for pa, pu in scored])))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="cail,cmrc,drcd")
    ap.add_argument("--part", default="dev", choices=["dev", "test"])
    ap.add_argument("--max-questions", type=int, default=300)
    ap.add_argument("--laws", type=Path, default=None, help="statute questions (`docqa finetune statute-questions`)")
    ap.add_argument("--user-laws", type=Path, default=None,
                    help="LawRefBook statutes (a folder): adds the user-phrased statute questions (set user-dev)")
    ap.add_argument("--cache", type=Path, default=None, help="pickle of the read windows: reused when present")
    ap.add_argument("--fit", action="store_true", help="write docqa/reader/ranker.json for the built reader")
    ap.add_argument("--out", type=Path, default=REPORTS / "reader_rank.md")
    args = ap.parse_args(argv)
    if not sets_ready(args, "rank"):
        return 2
    from docqa.reader.rank import FEATURES, WindowRanker
    from docqa.reader.runtime import load_reader

    reader = load_reader()
    t0 = time.perf_counter()
    sets: dict[str, list[dict]] = {}
    if args.cache and args.cache.is_file():
        sets = pickle.loads(args.cache.read_bytes())
    else:
        with temp_home("docqa-bench-rank-"):
            settings = bench_settings()
            for name in args.sets.split(","):
                sets[name] = windows_of(name, args.part, args.max_questions, reader, settings)
                print(f"[rank] {name}: {len(sets[name])} questions read ({time.perf_counter() - t0:.0f}s)", flush=True)
            if args.user_laws:
                sets["user-dev"] = user_windows(args.user_laws, reader, settings)
                print(f"[rank] user-dev: {len(sets['user-dev'])} questions read", flush=True)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(sets))
    weights, bias = fit(sets)
    t = operating_point(sets, weights, bias)
    rows = []
    for name, recs in sets.items():
        others = {k: v for k, v in sets.items() if k != name}
        w_o, b_o = fit(others)
        t_o = operating_point(others, w_o, b_o)
        g_r, pa_r, pu_r = question_scores(recs, lambda w: w["p_reader"])
        g_c, _, _ = question_scores(recs, lambda w: w["cov"])
        g_in, pa_in, pu_in = question_scores(recs, prob(weights, bias))
        g_out, pa_out, pu_out = question_scores(recs, prob(w_o, b_o))
        rows.append([name, len(recs), int(sum(not r["answerable"] for r in recs)), f"{g_r.mean():.3f}",
                     f"{g_c.mean():.3f}", f"{g_in.mean():.3f}", f"{g_out.mean():.3f}",
                     f"{balanced(pa_r, pu_r, 0.5):.3f}", f"{balanced(pa_in, pu_in, t):.3f}",
                     f"{balanced(pa_out, pu_out, t_o):.3f}"])
        print(f"[rank] {name}: " + " ".join(rows[-1][3:]), flush=True)
    bands = []
    spans = [w for recs in sets.values() for r in recs for w in r["windows"] if w["label"] and w["em"] is not None]
    for lo, hi in ((0, .1), (.1, .3), (.3, .5), (.5, 1.01)):
        b = [w for w in spans if lo <= w["span_p"] < hi]
        if b:
            bands.append([f"{lo}-{min(hi, 1)}", len(b), f"{np.mean([w['em'] for w in b]):.2f}",
                          f"{np.mean([w['contains'] for w in b]):.2f}"])
    band_table = md_table(["span probability", "windows", "span exact", "span contains gold (or half of it)"], bands)
    table = md_table(["set", "questions", "unanswerable", "first window holds gold: reader P", "coverage",
                      "ranker", "ranker fitted without this set", "answerability bal. acc.: reader P at .5",
                      "ranker", "ranker fitted without this set"], rows)
    shifted = bias - math.log(t / (1 - t))
    command = "python bench/reader_rank.py " + " ".join(sys.argv[1:] if argv is None else argv)
    card = {"command": command, "part": args.part, "sets": list(sets),
            "questions": {k: len(v) for k, v in sets.items()}, "operating_point": t, "fitted_on": machine_line(),
            "figures": table}
    if args.fit:
        path = WindowRanker(weights, shifted, reader.record.get("delta_sha256", ""), card).save()
        print(f"[rank] wrote {path}")
    body = (f"Measured by `{command}` on {machine_line()}.\n\n"
            f"Fitted weights ({', '.join(FEATURES)}): {', '.join(f'{w:.3f}' for w in weights)}; bias {bias:.3f}; "
            f"operating point P >= {t:.3f} (folded into the bias, so reader_threshold .5 is that point).\n\n{table}\n\n"
            f"## Is the short answer worth stating? (windows holding the answer, all sets)\n\n{band_table}\n\n"
            "service/answering/reading.py SHORT_MIN_SPAN_P: below it the answer quotes the sentence only.\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# The reader's window ranker on the {args.part} parts\n\n" + body, encoding="utf-8")
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
