"""Blocklist evasions against the compliance filter's normaliser (issue #12).

From the bundled blocklist (prompts/compliance/blocklist.txt) this builds evasions by rule, each
placed in a realistic answer sentence:

- separators between the characters of a Chinese term, one kind per evasion ("-", "·", "*", "_", "/",
  "|", "~", "•", "—", "…", spaces, the ideographic space, full-width "－" "＊" "＿" ...);
- zero-width characters between them (U+200B/C/D, U+2060, U+FEFF, the soft hyphen);
- traditional characters (OpenCC s2t), full-width forms, random inserted spaces;
- commas or enumeration commas between every character ("稳，赚，不，赔");
- mixed: traditional + a separator + a zero-width character;
- pinyin initials where the list defines them (``term | alias``);
- for English terms: upper/mixed case, full-width letters, runs of spaces and line breaks, zero-width
  characters inside the words;
- (#23) symbols or emoji inside a term, English words spelled out letter by letter, for terms of four
  or more characters one character slipped in and reversed order, homophones (common characters of the
  same toneless syllable), the term in pinyin (apart, together, mixed) and one syllable off with the
  same initial; and paraphrases of the forbidden claims, written here apart from claims.yaml, which
  the claim check (docqa/screening/claims.py) must catch, with same-topic sentences it must pass.

and 500 clean sentences from ../shared/data (CMRC 2018, DRCD in traditional characters, CAIL2019
judgments, DISC-FinLLM finance consulting answers, SQuAD 2) that the previous exact matcher (NFKC,
case-folded, whitespace ignored in Chinese terms) does not flag. Reported: the share of evasions
caught, per rule and overall (aim >= 99%), and the share of clean sentences the normalised matcher
now blocks (aim <= 1%), with the sentences themselves. Writes bench/reports/compliance_evasion.md.

    python bench/compliance_evasion.py [--seed 7] [--out bench/reports/compliance_evasion.md]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import CAIL_FILE, DATASET_FILES, Dataset, data_file, md_table, write_report  # noqa: E402

SEPARATORS = ["-", "·", "*", "_", "/", "|", "~", "•", "—", "…", " ", "\u3000", "－", "＊", "＿", ".", "+", "^", "'",
              "・"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
ZH_TEMPLATES = ["根据产品说明，本理财计划{x}，欢迎咨询[1]。", "客户经理表示，这款基金{x}。",
                "我们的服务{x}，请您放心。", "该方案{x}，适合稳健型投资者[2]。", "律师称，本案{x}，无需担心。",
                "投资本产品{x}，名额有限。"]
EN_TEMPLATES = ["Our advisor says this fund offers {x} [1].", "With this plan you get {x}, no matter what.",
                "We can promise {x} for every client [2].", "Clients of this product enjoy {x}."]
CJK = re.compile(r"[\u3400-\u9fff]")


def _terms(directory: Path) -> list[tuple[str, list[str]]]:
    """(term, aliases) of the blocklist file."""
    out = []
    for line in (directory / "blocklist.txt").read_text(encoding="utf-8").split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            parts = [p.strip() for p in line.split("|") if p.strip()]
            out.append((parts[0], parts[1:]))
    return out


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in s)


FILLERS = "又也还就都可真很更"
SYMBOLS = ["💰", "★", "☆", "♥", "❤️", "✓", "👍", "©", "→", "※", "＄", "♦", "🔥", "💯"]


def evasions(terms: list[tuple[str, list[str]]], rng: random.Random) -> list[tuple[str, str, str]]:
    """(rule, term, evaded sentence) for every rule that applies to every term."""
    import opencc

    s2t = opencc.OpenCC("s2t.json")
    out: list[tuple[str, str, str]] = []

    def put(rule: str, term: str, evaded: str) -> None:
        tpl = rng.choice(ZH_TEMPLATES if CJK.search(term) else EN_TEMPLATES)
        out.append((rule, term, tpl.format(x=evaded)))

    for term, aliases in terms:
        if CJK.search(term):
            for sep in rng.sample(SEPARATORS, 8):
                put("separators", term, sep.join(term))
            put("zero-width", term, rng.choice(ZERO_WIDTH).join(term))
            put("zero-width", term, rng.choice(ZERO_WIDTH).join(term[::1]) + rng.choice(ZERO_WIDTH))
            put("zero-width", term, "".join(c + rng.choice(ZERO_WIDTH) for c in term[:-1]) + term[-1])
            trad = s2t.convert(term)
            put("traditional", term, trad if trad != term else rng.choice(SEPARATORS).join(trad))
            put("full-width", term, rng.choice(["－", "＊", "＿", "\u3000", "．"]).join(term))
            chars = list(term)
            for _ in range(rng.randint(1, max(1, len(term) - 1))):
                chars.insert(rng.randint(1, len(chars) - 1), " ")
            put("inserted spaces", term, "".join(chars))
            put("commas between characters", term, rng.choice(["，", "、", ",", "。"]).join(term))
            for _ in range(2):
                put("mixed", term, "".join(c + rng.choice(SEPARATORS) + rng.choice(ZERO_WIDTH)
                                           for c in s2t.convert(term)[:-1]) + s2t.convert(term)[-1])
        else:
            put("case", term, term.upper())
            put("case", term, "".join(c.upper() if rng.random() < 0.5 else c for c in term))
            put("full-width", term, _fullwidth(term))
            put("inserted spaces", term, re.sub(" ", lambda _: rng.choice(["  ", "\n", " \t "]), term))
            w = term.split(" ")[0]
            put("zero-width", term, term.replace(w, w[:2] + rng.choice(ZERO_WIDTH) + w[2:], 1))
        for alias in aliases:
            put("pinyin initials", term, alias)
            put("pinyin initials", term, alias.upper())
    # the classes added for #23 draw from a generator of their own, so the cases above stay as they were
    rng = random.Random(23)
    for term, _ in terms:
        if CJK.search(term):
            for _ in range(2):  # an emoji or other symbol inside the term
                put("symbols inside", term, "".join(c + rng.choice(SYMBOLS) for c in term[:-1]) + term[-1])
            if len(term) >= 4:
                for _ in range(3):  # one character slipped in ("保本又保息")
                    i = rng.randint(1, len(term) - 1)
                    put("inserted character", term, term[:i] + rng.choice(FILLERS) + term[i:])
                for _ in range(3):  # in a sentence of its own each time
                    put("reversed order", term, term[::-1])
        else:
            for sep in rng.sample(["-", ".", " ", "_", "*", "·"], 5):  # "G-U-A-R-A-N-T-E-E-D returns"
                w = max(term.split(" "), key=len)
                put("spelled-out letters", term, term.replace(w, sep.join(w.upper() if rng.random() < .5 else w), 1))
    _sound_evasions(terms, put)
    return out


def common_chars_by_sound() -> dict[str, list[str]]:
    """Toneless syllable -> common characters with it (single-character words of jieba's dictionary
    seen 2,000+ times), so homophone evasions use characters people actually type."""
    import jieba
    from pypinyin import lazy_pinyin

    by_sound: dict[str, list[str]] = defaultdict(list)
    for line in (Path(jieba.__file__).parent / "dict.txt").read_text(encoding="utf-8").split("\n"):
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 1 and CJK.match(parts[0]) and int(parts[1]) >= 2000:
            by_sound[lazy_pinyin(parts[0])[0]].append(parts[0])
    return by_sound


def _initial(s: str) -> str:
    return s[:2] if s.startswith(("zh", "ch", "sh")) else s[:1]


def _sound_evasions(terms, put) -> None:
    """Claims written by sound (#23), from a generator of their own: homophone characters, the claim
    in pinyin (whole, or one or two syllables of it), one character swapped for one whose syllable
    starts the same way ("稳挣不赔")."""
    from pypinyin import lazy_pinyin

    rng = random.Random(2323)
    by_sound = common_chars_by_sound()
    long_terms = [t for t, _ in terms if CJK.search(t) and len(t) >= 4]
    for term in long_terms:
        sounds = lazy_pinyin(term)
        for _ in range(3):  # one or two characters replaced by common homophones
            chars = list(term)
            for i in rng.sample(range(len(term)), rng.choice([1, 2])):
                options = [c for c in by_sound.get(sounds[i], []) if c != term[i]]
                if options:
                    chars[i] = rng.choice(options)
            put("homophones", term, "".join(chars))
        for _ in range(3):  # pinyin: whole, with a separator, or mixed into the characters
            how = rng.choice(["whole", "mixed"])
            if how == "whole":
                text = rng.choice([" ", "-", "·", " "]).join(s.capitalize() if rng.random() < .3 else s for s in sounds)
            else:
                picks = set(rng.sample(range(len(term)), rng.choice([1, 2])))
                text = "".join(sounds[i] if i in picks else c for i, c in enumerate(term))
            put("pinyin spelled out", term, text)
        for _ in range(3):  # one syllable off, same initial
            i = rng.randrange(len(term))
            near = [c for snd, cs in by_sound.items() if snd != sounds[i] and _initial(snd) == _initial(sounds[i])
                    for c in cs]
            put("near homophone", term, term[:i] + rng.choice(near) + term[i + 1:])


# Paraphrases of the forbidden claims, written for this bench apart from prompts/compliance/claims.yaml
# (the claim check's training file): none is one of its examples (tests/bench checks), and the sentence
# templates differ too. Each class: predicates x templates, by rule.
PARAPHRASES = {
    "zh": {
        "returns": ["本钱一点也亏不了", "收益方面完全可以打包票", "回报是板上钉钉的事", "怎么投都不会赔",
                    "利润稳稳落袋", "亏本这种事根本不会发生", "每月都能稳定拿到钱，本金毫发无损", "收益只升不降",
                    "赚钱是百分之百的事",
                    "您的本金由我们全额兜住", "保证一分不少地还给您，还多给利息", "年年都有稳定进账，不存在亏的情况"],
        "outcome": ["这场诉讼我们稳操胜券", "判决结果一定站在您这边", "打这个官司您绝对吃不了亏", "对方必然败诉",
                    "我们能保证法院支持您的全部诉求"],
        "shortcut": ["我们在审批部门有熟人，交钱马上就批", "找我们办不用走流程", "给点辛苦费就能优先办理",
                     "条件不够也能托人帮您办成"],
    },
    "en": {
        "returns": ["your money is safe and the gains are certain", "you simply cannot lose on this",
                    "profit is assured every single year", "we promise you will never see a loss",
                    "the return is fixed and completely secure", "losing money is impossible here",
                    "your capital is fully protected and it will grow"],
        "outcome": ["winning your case is a certainty", "we promise the court will rule in your favour",
                    "the other side is bound to lose"],
        "shortcut": ["a small payment gets your application approved at once",
                     "we have friends in the office who can skip the checks for you"],
    },
}
PARAPHRASE_TEMPLATES = {"zh": ["顾问回复：{x}。", "{x}，您尽管放心[1]。", "根据我们的经验，{x}。", "总之，{x}。"],
                        "en": ["Advisor reply: {x}.", "In short, {x} [1].", "Based on our experience, {x}.",
                               "Rest assured: {x}."]}
# same-topic sentences that make no forbidden claim (disclaimers, facts), written for this bench
FINE = {"zh": ["本产品的收益会随市场波动", "理财产品的过往收益不预示其未来表现", "是否胜诉要看法院对证据的认定",
               "审批需按规定流程逐级审核", "本基金近三年年化收益率约为百分之四", "投资前请阅读产品说明书",
               "保证人在保证范围内承担责任", "如对审批结果有异议，可以申请行政复议",
               "理财产品不保本保息，收益随市场变化", "任何律师都无法保证胜诉", "请警惕稳赚不赔的宣传"],
        "en": ["the value of your investment can fall as well as rise",
               "we will review the evidence before advising you", "the fund's average return over five years was 3.8%",
               "every application goes through the same review", "there are no guaranteed returns in investing"]}


def paraphrase_cases(rng: random.Random) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(class, claim, sentence) of the claims' paraphrases, and the fine sentences, by rule."""
    cases = []
    for lang, claims in PARAPHRASES.items():
        for claim, preds in claims.items():
            for x in preds:
                for tpl in rng.sample(PARAPHRASE_TEMPLATES[lang], 2):
                    cases.append(("paraphrase", claim, tpl.format(x=x)))
            if lang == "zh":  # two paraphrases of one claim in one breath ("...、...")
                for _ in range(2):
                    a, b = rng.sample(preds, 2)
                    cases.append(("paraphrase", claim, rng.choice(PARAPHRASE_TEMPLATES[lang]).format(x=f"{a}、{b}")))
    fine = [tpl.format(x=x) for lang, xs in FINE.items() for x in xs
            for tpl in rng.sample(PARAPHRASE_TEMPLATES[lang], 2)]
    return cases, fine


def clean_sentences(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """(source, sentence) from the shared data, shuffled, ``n`` of them."""
    from docqa.text.sentences import split_sentences

    texts: dict[str, list[str]] = defaultdict(list)
    for ds, label in ((Dataset.CMRC, "CMRC 2018"), (Dataset.DRCD, "DRCD (traditional)"), (Dataset.SQUAD2, "SQuAD 2")):
        paragraphs = [p for art in json.loads(data_file(DATASET_FILES[ds]).read_text(encoding="utf-8"))["data"]
                      for p in art["paragraphs"]]
        # SQuAD's even-numbered paragraphs train the claim check (prompts/compliance/CLAIMS_MODEL.md)
        texts[label] += [p["context"] for i, p in enumerate(paragraphs) if ds is not Dataset.SQUAD2 or i % 2]
    for art in json.loads(data_file(CAIL_FILE).read_text(encoding="utf-8"))["data"]:
        texts["CAIL2019"] += [p["context"] for p in art["paragraphs"]]
    texts["DISC-FinLLM"] = [r["output"] for r in json.loads(data_file("disc_fin_sft/consulting_part.json")
                                                              .read_text(encoding="utf-8"))]
    quota = {"CMRC 2018": 0.3, "DRCD (traditional)": 0.2, "CAIL2019": 0.2, "DISC-FinLLM": 0.2, "SQuAD 2": 0.1}
    out: list[tuple[str, str]] = []
    for label, share in quota.items():
        pool = [s for t in texts[label] for s in split_sentences(t) if 8 <= len(s) <= 160]
        rng.shuffle(pool)
        out += [(label, s) for s in pool[: int(round(n * share * 2))]]  # twice: the exact matcher drops some
    rng.shuffle(out)
    return out


class ExactMatcher:
    """The matcher before the normaliser: NFKC, case folding, whitespace ignored inside Chinese terms."""

    def __init__(self, directory: Path):
        terms = [t for t, _ in _terms(directory)]
        self.cjk = [t for t in terms if CJK.search(t)]
        self.latin = [t.casefold() for t in terms if not CJK.search(t)]
        rules = [ln.strip() for ln in (directory / "blocklist_regex.txt").read_text(encoding="utf-8").split("\n")]
        self.regexes = [re.compile(r, re.I) for r in rules if r and not r.startswith("#")]

    def hits(self, text: str) -> bool:
        norm = unicodedata.normalize("NFKC", text).casefold()
        squeezed, spaced = re.sub(r"\s+", "", norm), re.sub(r"\s+", " ", norm)
        return (any(t in squeezed for t in self.cjk) or any(re.search(rf"(?<!\w){re.escape(t)}(?!\w)", spaced)
                                                            for t in self.latin)
                or any(r.search(spaced) for r in self.regexes))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--clean", type=int, default=500)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "reports" / "compliance_evasion.md")
    args = ap.parse_args(argv)
    from docqa.screening import DEFAULT_COMPLIANCE_DIR, Blocklist
    from docqa.screening.claims import load_claim_check

    rng = random.Random(args.seed)
    blocklist = Blocklist.load(DEFAULT_COMPLIANCE_DIR)
    claims = load_claim_check(DEFAULT_COMPLIANCE_DIR)

    def find(text: str):
        return blocklist.find(text) or (claims.find(text) if claims else None)

    cases = evasions(_terms(DEFAULT_COMPLIANCE_DIR), rng)
    para, fine = paraphrase_cases(random.Random(2324))  # a generator of its own: the cases above stay
    cases += para
    per_rule: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed = []
    for rule, term, sentence in cases:
        hit = find(sentence)
        per_rule[rule][1] += 1
        if hit is not None:
            per_rule[rule][0] += 1
        else:
            missed.append((rule, term, sentence))
    exact = ExactMatcher(DEFAULT_COMPLIANCE_DIR)
    exact_caught = sum(exact.hits(s) for _, _, s in cases)
    pool = clean_sentences(args.clean, rng)
    clean = [(src, s) for src, s in pool if not exact.hits(s)][: args.clean]
    blocked = [(src, s, h) for src, s in clean if (h := find(s))]
    fine_blocked = [(s, h) for s in fine if (h := find(s))]
    caught = sum(c for c, _ in per_rule.values())
    result = {"evasions": len(cases), "caught": caught, "catch_rate": caught / len(cases),
              "exact_matcher_catch_rate": exact_caught / len(cases), "clean": len(clean),
              "false_blocks": len(blocked), "false_block_rate": len(blocked) / max(1, len(clean)),
              "fine": len(fine), "fine_blocked": len(fine_blocked),
              "per_rule": {r: {"caught": c, "total": t, "rate": c / t} for r, (c, t) in per_rule.items()}}
    rows = [[r, t, c, c / t] for r, (c, t) in sorted(per_rule.items())]
    rows.append(["**all**", len(cases), caught, caught / len(cases)])
    by_source: dict[str, int] = defaultdict(int)
    for src, _ in clean:
        by_source[src] += 1
    body = "\n\n".join([
        f"`python bench/compliance_evasion.py --seed {args.seed}`: {len(cases)} evasions of the "
        f"{len(_terms(DEFAULT_COMPLIANCE_DIR))} terms of prompts/compliance/blocklist.txt, each in an answer "
        "sentence, checked by the blocklist on the shared normaliser (docqa/screening/normalize.py).",
        md_table(["rule", "evasions", "caught", "share"], rows),
        f"Caught: **{caught / len(cases):.1%}** (aim >= 99%). The exact matcher used before caught "
        f"{exact_caught / len(cases):.1%} of the same sentences.",
        f"Clean sentences: {len(clean)} ({', '.join(f'{k} {v}' for k, v in sorted(by_source.items()))}) that the "
        f"exact matcher passes. Blocked by the normalised matcher: **{len(blocked)} "
        f"({len(blocked) / max(1, len(clean)):.1%})** (aim <= 1%).",
        ("Wrongly blocked:\n\n" + "\n".join(f"- {src}: {s[:120]} — {h.describe()}" for src, s, h in blocked))
        if blocked else "No clean sentence was blocked.",
        f"Same-topic sentences that make no forbidden claim (disclaimers and facts written for this bench, "
        f"{len(fine)}): blocked **{len(fine_blocked)}**"
        + ("".join(f"\n- {s} — {h.describe()}" for s, h in fine_blocked) if fine_blocked else "."),
        ("The paraphrase class is checked by the claim check (docqa/screening/claims.py, model card "
         "prompts/compliance/CLAIMS_MODEL.md) after the blocklist; " + (
             f"its threshold is {claims.model.threshold:.3f}." if claims else "**no claim model was found**.")),
        ("Missed evasions:\n\n" + "\n".join(f"- {r}: {s!r}" for r, _, s in missed[:30])) if missed else
        "No evasion was missed.",
        "Not generated, and not caught today: split characters (\"禾急\" for 稳), homophones and pinyin of "
        "terms shorter than four characters (by rule: two or "
        "three syllables alike are common in clean text); the blocklist's regexes and aliases are the place for "
        "those a deployment actually sees.",
    ])
    write_report(args.out, "Blocklist evasions vs the normaliser", body)
    print(json.dumps({k: v for k, v in result.items() if k != "per_rule"}, indent=1))
    for r, v in sorted(result["per_rule"].items()):
        print(f"  {r:<28} {v['caught']:>4}/{v['total']:<4} {v['rate']:.3f}")
    return result


if __name__ == "__main__":
    main()
