"""`docqa finetune claims`: train the claim check (docqa/screening/claims.py) from claims.yaml.

Data, all split before anything is fitted, and the threshold chosen on the held-out part only:

- positives: each example clause of claims.yaml, bare and in sentence frames with subjects; split by
  EXAMPLE (every wording of one example is on the same side), a fifth held out;
- hard negatives: the ``fine`` clauses (disclaimers, negations, same-topic facts), framed the same way;
- clean text: sentences (and their clauses) of the files given with ``--clean`` (.md .txt .html, JSON,
  JSONL or YAML: every string of 8+ characters; .py: docstrings; a folder: its files), split by record;
  ``PATH@even`` / ``PATH@odd`` keep every other top-level record of a JSON file, or paragraph of a
  SQuAD-style one (the other half stays unseen for a report).

A logistic classifier on the encoder's normalised vectors (class-balanced, L2, full-batch gradient
descent: seconds; the fine clauses weigh four times), its threshold the lowest probability at which
held-out clean text is flagged at most ``--max-false`` of the time. Writes claims_model.json and
CLAIMS_MODEL.md into the compliance directory; prints the held-out figures (claims caught, false flags
on clean text and on the fine clauses).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import click
import numpy as np

from docqa.screening.claims import CLAIMS_FILE, ClaimModel, disclaims, pieces
from docqa.text.language import lang_of

HELD_OUT = 5  # one in five examples / records
READABLE = (".md", ".txt", ".html", ".htm", ".json", ".jsonl", ".yaml", ".yml", ".py")


def _held_out(key: str) -> bool:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % HELD_OUT == 0


def _wrap(x: str, lang: str, spec: dict, rng: random.Random, n: int) -> list[str]:
    """``x`` bare and in ``n`` sentence frames of its language."""
    out = [x]
    for frame in rng.sample(spec["frames"][lang], min(n, len(spec["frames"][lang]))):
        s = rng.choice(spec["subjects"][lang])
        out.append(frame.format(s=s, x=x, s_lower=s[:1].lower() + s[1:], x_cap=x[:1].upper() + x[1:]))
    return out


def claim_sets(spec: dict, seed: int, frames: int = 4) -> dict[str, list[tuple[str, str, bool]]]:
    """{"claim": [(claim id, text, held out)], "fine": [...]} from a claims.yaml spec. Claims come bare, in
    ``frames`` sales frames, and in pairs of one claim's examples ("绝不亏本、收益有保证"); fine clauses in
    the same frames, so that a frame ("请您放心") tells the classifier nothing."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[str, str, bool]]] = {"claim": [], "fine": []}
    for cid, claim in spec["claims"].items():
        for kind, key in (("claim", "examples"), ("fine", "fine")):
            for lang, examples in (claim.get(key) or {}).items():
                for x in examples:
                    held = _held_out(f"{cid}/{x}")
                    texts = _wrap(x, lang, spec, rng, frames)
                    if kind == "claim":  # paired with another example on the same side of the split
                        mates = [m for m in examples if m != x and _held_out(f"{cid}/{m}") == held]
                        if mates:
                            joint = "、" if lang == "zh" else " and "
                            texts.append(x + joint + rng.choice(mates))
                    out[kind] += [(cid, text, held) for text in texts]
                    # the check also reads clauses alone ("请您放心", "Rest assured"): those without the example
                    # are not the claim
                    out["fine"] += [(cid, c, held) for text in texts for c in pieces(text)[1:] if x not in c]
    for lang, xs in (spec.get("fine") or {}).items():  # everyday assistant sentences, in no claim's topic
        for x in xs:
            out["fine"] += [("general", text, _held_out(f"general/{x}")) for text in _wrap(x, lang, spec, rng, frames)]
    return out


def _strings(value, out: list[str]) -> None:
    if isinstance(value, str):
        if len(value) >= 8:
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def read_clean(spec: str) -> list[tuple[str, list[str]]]:
    """(record key, texts) of one ``--clean`` path, ``PATH@even``/``PATH@odd`` for half of a JSON's records."""
    path_text, _, half = spec.partition("@")
    path = Path(path_text)
    if half not in ("", "even", "odd"):
        raise click.BadParameter(f"{spec}: the part after @ is 'even' or 'odd'")
    if path.is_dir():  # the readable files directly inside it
        return [r for f in sorted(path.iterdir()) if f.suffix in READABLE and f.is_file() for r in read_clean(str(f))]
    if not path.is_file():
        raise click.BadParameter(f"{path}: no such file or folder")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".py":  # docstrings: English prose (the standard library's, for one)
        import ast

        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            return []
        docs = [ast.get_docstring(n) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        return [(f"{path.name}#{i}", [d]) for i, d in enumerate(docs) if d]
    if path.suffix in (".json", ".jsonl"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # JSON lines, whatever the suffix says
            try:
                data = [json.loads(line) for line in text.split("\n") if line.strip()]
            except json.JSONDecodeError as e:
                raise click.BadParameter(f"{path}: neither JSON nor JSON lines ({e})") from None
        if isinstance(data, dict):
            data = data.get("data", [data])
        # SQuAD-style articles: each paragraph is a record (a sample may hold one article)
        data = [p for rec in data for p in rec["paragraphs"]] \
            if all(isinstance(r, dict) and isinstance(r.get("paragraphs"), list) for r in data) else data
        records = []
        for i, rec in enumerate(data):
            if half and (i % 2 == 0) != (half == "even"):
                continue
            found: list[str] = []
            _strings(rec, found)
            records.append((f"{path.name}#{i}", found))
        return records
    if path.suffix in (".yaml", ".yml"):
        import yaml

        found: list[str] = []
        _strings(yaml.safe_load(text), found)
        return [(f"{path.name}#{i}", [t]) for i, t in enumerate(found)]
    if path.suffix in (".html", ".htm"):
        text = re.sub(r"<[^>]+>", " ", text)
    return [(f"{path.name}#{i}", [block]) for i, block in enumerate(re.split(r"\n\s*\n", text)) if block.strip()]


def clean_pieces(specs: list[str], limit: int, seed: int) -> list[tuple[str, bool]]:
    """(text, held out) of clean sentences and clauses, ``limit`` at most, split by record."""
    rng = random.Random(seed)
    out: list[tuple[str, bool]] = []
    for spec in specs:
        for key, texts in read_clean(spec):
            held = _held_out(key)
            for t in texts:
                out += [(p, held) for p in pieces(re.sub(r"\s+", " ", t)) if 6 <= len(p) <= 200]
    rng.shuffle(out)
    return out[:limit]


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, steps: int = 3000, lr: float = 0.5,
                 seed: int = 0) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression by full-batch gradient descent (Adam): (weights, bias)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1e-3, x.shape[1]).astype(np.float64)
    b = 0.0
    pos = y.mean()
    sample_w = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)) / len(y)
    m = np.zeros(x.shape[1] + 1)
    v = np.zeros(x.shape[1] + 1)
    for t in range(1, steps + 1):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = sample_w * (p - y)
        grad = np.concatenate([x.T @ g + l2 * w, [g.sum()]])
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        step = lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8) / np.sqrt(t)
        w -= step[:-1]
        b -= step[-1]
    return w.astype(np.float32), float(b)


def fit_standardized(x: np.ndarray, y: np.ndarray, hard: np.ndarray, *, fine_weight: int = 4, l2: float = 1e-2,
                     seed: int = 0) -> tuple[np.ndarray, float]:
    """``fit_logistic`` on standardised features (e5's vectors vary little along most axes), the hard
    negatives counted ``fine_weight`` times; the scaling is folded back, so the model scores raw vectors."""
    x = x.astype(np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    reps = np.where(hard, fine_weight, 1)
    w, b = fit_logistic(np.repeat((x - mean) / std, reps, axis=0), np.repeat(y, reps), l2=l2, lr=0.05,
                        steps=2000, seed=seed)
    w = w.astype(np.float64) / std
    return w.astype(np.float32), float(b - (w * mean).sum())


def pick_threshold(neg_scores: np.ndarray, max_false: float) -> float:
    """The lowest threshold that flags at most ``max_false`` of ``neg_scores``."""
    if len(neg_scores) == 0:
        return 0.5
    allowed = int(np.floor(max_false * len(neg_scores)))
    ranked = np.sort(neg_scores)[::-1]
    return float(min(0.999, max(0.5, ranked[allowed] + 1e-6)))


def train_claims(directory: Path, clean: list[str], *, encoder: str, backend: str, device: str = "cpu",
                 seed: int = 13, clean_limit: int = 8000, max_false: float = 0.002, frames: int = 4,
                 command: str = "") -> dict:
    import yaml

    from docqa.models.embedder import shared_embedder

    spec = yaml.safe_load((directory / CLAIMS_FILE).read_text(encoding="utf-8"))
    sets = claim_sets(spec, seed, frames)
    clean_set = clean_pieces(clean, clean_limit, seed)
    rows = [(t, 1, h, cid) for cid, t, h in sets["claim"]] + [(t, 0, h, "fine") for _, t, h in sets["fine"]] + \
        [(t, 0, h, "clean") for t, h in clean_set]
    rows = [r for r in rows if not disclaims(r[0])]  # the check never scores these (docqa/screening/claims.py)
    emb = shared_embedder(encoder, device, backend=backend)
    t0 = time.monotonic()
    x = emb.encode_docs([r[0] for r in rows], show_progress=sys.stderr.isatty())
    encode_s = time.monotonic() - t0
    y = np.array([r[1] for r in rows], dtype=np.float64)
    held = np.array([r[2] for r in rows])
    kind = np.array([r[3] for r in rows])
    w, b = fit_standardized(x[~held], y[~held], kind[~held] == "fine", seed=seed)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    # the operating point: clean text flagged at most max_false of the time (what a user of an ordinary answer
    # would meet); the same-topic fine clauses are reported, not fitted to (they are the hard trade-off)
    threshold = pick_threshold(p[held & (kind == "clean")], max_false)
    # ... and per language where it has held-out clean text of its own: English and Chinese sentences sit at
    # different distances from the claims, and one threshold would be set by the language with more text
    langs = np.array([lang_of(r[0]).value for r in rows])
    thresholds = {lang: pick_threshold(p[held & (kind == "clean") & (langs == lang)], max_false)
                  for lang in ("zh", "en") if (held & (kind == "clean") & (langs == lang)).sum() >= 100}
    cut = np.array([thresholds.get(lang, threshold) for lang in langs])

    def rate(mask) -> float:
        return float((p[mask] >= cut[mask]).mean()) if mask.any() else float("nan")

    figures = {
        "threshold": threshold, "thresholds": thresholds,
        "held_out": {"claims_caught": rate(held & (y == 1)), "fine_flagged": rate(held & (kind == "fine")),
                     "clean_flagged": rate(held & (kind == "clean")),
                     "n_claims": int((held & (y == 1)).sum()), "n_fine": int((held & (kind == "fine")).sum()),
                     "n_clean": int((held & (kind == "clean")).sum())},
        "train": {"claims_caught": rate(~held & (y == 1)), "fine_flagged": rate(~held & (kind == "fine")),
                  "clean_flagged": rate(~held & (kind == "clean")), "n": int((~held).sum())},
    }
    centroids = {}
    for cid in spec["claims"]:
        c = x[(kind == cid) & ~held].mean(0)
        centroids[cid] = c / (np.linalg.norm(c) or 1.0)
    names = {cid: c.get("name", {}).get("en", cid) for cid, c in spec["claims"].items()}
    card = {"command": command, "seed": seed, "encoder": encoder, "backend": backend, "clean": clean,
            "counts": {"claims": int(y.sum()), "fine": int((kind == "fine").sum()),
                       "clean": int((kind == "clean").sum())},
            "max_false": max_false, "figures": figures, "encode_seconds": round(encode_s, 1)}
    model = ClaimModel(encoder, backend, w, b, threshold, thresholds, centroids, names, card)
    model.save(directory)
    return card


def write_card(directory: Path, card: dict, sources: dict[str, str]) -> Path:
    """CLAIMS_MODEL.md: data and license of each set, figures, the command and seed that reproduce it."""
    f, h, tr = card["figures"], card["figures"]["held_out"], card["figures"]["train"]
    lines = [
        "# Claim check model (claims_model.json)",
        "",
        "A logistic classifier on the normalised vectors of the encoder below: does a sentence or clause make "
        "one of the forbidden claims of claims.yaml? It is read by docqa/screening/claims.py; see that module "
        "for how a draft is cut into pieces.",
        "",
        f"- encoder: `{card['encoder']}` (backend `{card['backend']}`); weights: its dimension plus a bias",
        f"- threshold: {f['threshold']:.4f} (the lowest at which held-out clean text is flagged at most "
        f"{card['max_false']:.1%} of the time); per language, the same rule on that language's clean text: "
        + (", ".join(f"{k} {v:.4f}" for k, v in f.get("thresholds", {}).items()) or "none"),
        f"- reproduce: `{card['command']}` (seed {card['seed']})",
        "",
        "## Data",
        "",
        f"- claims: {card['counts']['claims']} texts from the `examples` of claims.yaml (written for docqa), bare "
        "and in the file's sentence frames; split by example, one in five held out",
        f"- fine: {card['counts']['fine']} texts from the `fine` clauses of claims.yaml (disclaimers, negations, "
        "same-topic facts), framed the same way",
        f"- clean: {card['counts']['clean']} sentences and clauses of the files below, split by record or file:",
        "",
        *[f"  - `{path}`: {next((lic for key, lic in sources.items() if key in path), 'see its SOURCE.txt')}"
          for path in card["clean"]],
        "",
        "## Figures",
        "",
        "| split | claims caught | fine flagged | clean flagged | texts |",
        "| --- | --- | --- | --- | --- |",
        f"| held out | {h['claims_caught']:.1%} | {h['fine_flagged']:.1%} | {h['clean_flagged']:.2%} | "
        f"{h['n_claims']} / {h['n_fine']} / {h['n_clean']} |",
        f"| training | {tr['claims_caught']:.1%} | {tr['fine_flagged']:.1%} | {tr['clean_flagged']:.2%} | {tr['n']} |",
        "",
        "The held-out claims are wordings of held-out examples written by the same hand as the training ones; "
        "the compliance-evasion bench (bench/compliance_evasion.py) measures paraphrases written apart from "
        "claims.yaml, and clean sentences from sets this model never saw.",
        "",
    ]
    path = directory / "CLAIMS_MODEL.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
