"""What a run leaves in its output folder: ``metrics.json``, ``report.md`` and the plots.

Plots (matplotlib, when installed): ``recall_at_k.png`` (share of answerable questions whose gold
passage is in the top k, k = 1..20), ``refusal_scores.png`` (evidence scores of answerable vs
unanswerable questions, the refusal threshold marked: a KB whose two histograms overlap cannot refuse
well at any threshold), ``latency.png`` (p50/p95 per stage) and, for a sweep, ``sweep_<key>.png``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from service.evaluation import metrics as M

log = logging.getLogger("docqa.eval")


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def metric_table(m: dict, baseline: dict | None = None) -> str:
    names = ["questions", "answerable", "unanswerable", "hit@1", "hit@5", "hit@20", "mrr@10", "answer_contains",
             "citation_precision", "citation_recall", "refusal_accuracy", "false_refusal_rate",
             "answerability_balanced_accuracy", "short_em", "short_f1", "numbers_exact"]
    if baseline is None:
        rows = ["| metric | value |", "|---|---:|"] + [f"| {n} | {_fmt(m.get(n))} |" for n in names]
    else:
        rows = ["| metric | baseline | this run | change |", "|---|---:|---:|---:|"]
        for n in names:
            a, b = m.get(n), baseline.get(n)
            change = f"{a - b:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "–"
            rows.append(f"| {n} | {_fmt(b)} | {_fmt(a)} | {change} |")
    return "\n".join(rows)


def write_report(out: Path, m: dict, records: list[dict], *, title: str, baseline: dict | None = None,
                 regressed: list[str] | None = None, skipped: list[tuple[int, str]] | None = None,
                 notes: list[str] | None = None, sweep: dict | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**m, **({"sweep": sweep} if sweep else {})}, ensure_ascii=False,
                                                 indent=2), encoding="utf-8")
    plots = _plots(out, m, records, sweep)
    lines = [f"# {title}", "", metric_table(m, baseline), ""]
    if regressed is not None:
        lines += [f"**Regressions beyond the tolerance: {', '.join(regressed)}**" if regressed
                  else "No main metric fell beyond the tolerance.", ""]
    lines += ["| outcome | share |", "|---|---:|"] + [f"| {k} | {v:.3f} |" for k, v in m["outcomes"].items()] + [""]
    lat = m["latency_ms"]
    lines += ["| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
    lines += [f"| {k.removesuffix('_ms')} | {_fmt(v['p50'])} | {_fmt(v['p95'])} |" for k, v in lat.items()] + [""]
    if sweep:
        key = sweep["key"]
        lines += [f"## Sweep of `{key}`", "", "| value | " + " | ".join(n for n, _ in M.MAIN_METRICS) + " |",
                  "|---|" + "---:|" * len(M.MAIN_METRICS)]
        for v, mm in zip(sweep["values"], sweep["metrics"], strict=True):
            lines.append(f"| {v} | " + " | ".join(_fmt(mm.get(n)) for n, _ in M.MAIN_METRICS) + " |")
        lines.append("")
    for p in plots:
        lines += [f"![{p.stem}]({p.name})", ""]
    failures = [r for r in records if r.get("answer_contains") is False or (r["unanswerable"] and not r["declined"])]
    if failures:
        lines += [f"## First failures ({len(failures)} in all; every row is in rows.jsonl)", ""]
        for r in failures[:15]:
            want = "refusal" if r["unanswerable"] else " / ".join(r.get("answers", [])[:2])
            lines.append(f"- line {r.get('line')}: {r['question'][:80]} — wanted {want[:60]}; got "
                         f"{r['outcome']}: {r['answer'][:80]} (gold rank {r.get('rank')})")
        lines.append("")
    if skipped:
        lines += [f"Skipped {len(skipped)} malformed line(s): " + "; ".join(f"line {n}: {why}" for n, why in
                                                                          skipped[:10]), ""]
    for n in notes or []:
        lines += [f"Note: {n}", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return out / "report.md"


def _plots(out: Path, m: dict, records: list[dict], sweep: dict | None) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: report.md has no plots (pip install matplotlib)")
        return []
    made = []
    ranks = [r["rank"] for r in records if not r["unanswerable"]]
    if ranks:
        ks = list(range(1, 21))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(ks, [M.hit_at(ranks, k) for k in ks], marker="o", ms=3)
        ax.set(xlabel="k", ylabel="gold passage in top k", ylim=(0, 1.02), title="recall@k")
        ax.grid(alpha=0.3)
        made.append(_save(fig, out / "recall_at_k.png"))
    ans = [r["evidence_score"] for r in records if not r["unanswerable"] and r["outcome"] != "fallback"]
    una = [r["evidence_score"] for r in records if r["unanswerable"]]
    if ans or una:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist([ans, una], bins=30, label=["answerable", "unanswerable"], color=["tab:blue", "tab:red"], alpha=0.7)
        if m.get("refusal_threshold") is not None:
            ax.axvline(m["refusal_threshold"], color="black", ls="--", label=f"threshold {m['refusal_threshold']:.3f}")
        ax.set(xlabel="evidence score (the reader's P(answer), or the best sentence's support)", ylabel="questions",
               title="refusal scores")
        ax.legend()
        made.append(_save(fig, out / "refusal_scores.png"))
    rel = _reliability(records)
    if rel:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfectly calibrated")
        ax.plot([c for c, _, _ in rel], [f for _, f, _ in rel], marker="o", label="reader")
        for c, f, n in rel:
            ax.annotate(str(n), (c, f), fontsize=7, xytext=(3, -8), textcoords="offset points")
        ax.set(xlabel="reader P(answer)", ylabel="share of those questions answerable", xlim=(0, 1), ylim=(0, 1.02),
               title="reliability of the answer probability")
        ax.legend(fontsize=8)
        made.append(_save(fig, out / "reliability.png"))
    lat = {k.removesuffix("_ms"): v for k, v in m["latency_ms"].items() if v["p50"] is not None}
    if lat:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        names = list(lat)
        ax.bar([i - 0.2 for i in range(len(names))], [lat[n]["p50"] for n in names], 0.4, label="p50")
        ax.bar([i + 0.2 for i in range(len(names))], [lat[n]["p95"] for n in names], 0.4, label="p95")
        ax.set_xticks(range(len(names)), names)
        ax.set(ylabel="ms", title="latency per stage")
        ax.legend()
        made.append(_save(fig, out / "latency.png"))
    if sweep:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for name in ("answer_contains", "refusal_accuracy", "false_refusal_rate", "citation_precision"):
            ys = [mm.get(name) for mm in sweep["metrics"]]
            if any(y is not None for y in ys):
                ax.plot(sweep["values"], [y if y is not None else float("nan") for y in ys], marker="o", label=name)
        ax.set(xlabel=sweep["key"], ylim=(0, 1.02), title=f"sweep of {sweep['key']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        made.append(_save(fig, out / f"sweep_{sweep['key']}.png"))
    return made


def _reliability(records: list[dict], bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean P(answer), share answerable, count) per probability bin, over the questions the reader
    decided; a calibrated reader lies on the diagonal."""
    rows = [(r["evidence_score"], not r["unanswerable"]) for r in records if r.get("basis") == "reader"]
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        part = [(p, t) for p, t in rows if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if part:
            out.append((sum(p for p, _ in part) / len(part), sum(t for _, t in part) / len(part), len(part)))
    return out


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
