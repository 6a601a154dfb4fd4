"""The claim check (#23 item 4, paraphrases): pieces and disclaimers by rule, the shipped model on
sentences it never saw, its file's errors, and `docqa finetune claims` end to end on a small set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from docqa.screening import DEFAULT_COMPLIANCE_DIR
from docqa.screening.claims import ClaimCheck, ClaimModel, ClaimModelError, disclaims, load_claim_check, pieces
from docqa.text.sentences import split_sentences

REPO = Path(__file__).resolve().parents[2]


def test_a_draft_is_read_sentence_by_sentence_and_clause_by_clause() -> None:
    got = pieces("总之，对方必然败诉。本产品收益稳定，请放心！")
    assert got == ["总之，对方必然败诉。", "对方必然败诉。", "本产品收益稳定，请放心！", "本产品收益稳定", "请放心！"]


@pytest.mark.parametrize(("piece", "disclaimer"), [
    ("本产品不保证收益", True), ("基金投资可能损失本金", True), ("Returns are not guaranteed", True),
    ("you may lose money", True), ("不可能亏损", False), ("绝不亏本", False), ("收益有保证", False),
    ("you will never lose money", False)])
def test_disclaimers_are_read_by_rule_and_a_negated_loss_is_not_one(piece: str, disclaimer: bool) -> None:
    assert disclaims(piece) is disclaimer


@pytest.fixture(scope="module")
def check(e5_model: str) -> ClaimCheck:
    c = load_claim_check(DEFAULT_COMPLIANCE_DIR)
    assert c is not None, "prompts/compliance/claims_model.json is missing"
    return c


# written for this test: neither in claims.yaml nor in the evasion bench
CLAIMS = ["您放心，这笔钱只会越滚越多，绝对亏不了。", "我们给您兜底，本金不会少一分。",
          "这个官司您放一百个心，赢定了。", "You will get every cent back plus a fixed profit, no risk involved."]
FINE = ["根据合同约定，甲方应在十日内支付货款。", "本基金成立于2015年，由某某基金管理公司管理。",
        "The court hears the case next month.", "理财产品不保证收益，请根据风险承受能力选择。",
        "年度报告显示营业收入增长百分之十二。"]


@pytest.mark.parametrize("claim", CLAIMS)
def test_the_shipped_model_catches_claims_it_never_saw(check: ClaimCheck, claim: str) -> None:
    hit = check.find(claim)
    assert hit is not None and hit.score >= check.model.threshold, claim


@pytest.mark.parametrize("fine", FINE)
def test_the_shipped_model_passes_ordinary_and_disclaiming_text(check: ClaimCheck, fine: str) -> None:
    assert check.find(fine) is None, check.find(fine)


def test_a_claim_is_not_excused_by_a_disclaimer_in_the_next_clause(check: ClaimCheck) -> None:
    hit = check.find("本金一分都少不了、回报也是确定的，投资需谨慎。")
    assert hit is not None and "谨慎" not in hit.text


def test_the_sample_corpus_never_trips_the_claim_check(check: ClaimCheck, examples_docs: Path) -> None:
    """The statutes of the quick start: quoted in answers, they must pass."""
    paragraphs = [line for p in sorted(examples_docs.glob("*.md")) for line in p.read_text(encoding="utf-8").split("\n")
                  if split_sentences(line)]
    assert len(paragraphs) > 100
    assert [h for p in paragraphs if (h := check.find(p))] == []


def test_a_broken_or_mismatched_model_file_is_a_clear_error(tmp_path: Path, check: ClaimCheck) -> None:
    (tmp_path / "claims_model.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ClaimModelError, match="claims_model.json.*docqa finetune claims"):
        ClaimModel.load(tmp_path)
    model = ClaimModel.load(DEFAULT_COMPLIANCE_DIR)
    model.weights = model.weights[:10]
    with pytest.raises(ClaimModelError, match="dimensions"):
        ClaimCheck(model, check.embedder)
    assert ClaimModel.load(tmp_path / "nowhere") is None  # no file: no check (the blocklist still runs)


def test_the_bench_paraphrases_are_not_training_examples() -> None:
    """The evasion bench measures wordings the model was not trained on."""
    sys.path.insert(0, str(REPO))
    from bench.compliance_evasion import FINE as BENCH_FINE
    from bench.compliance_evasion import PARAPHRASES

    spec = yaml.safe_load((DEFAULT_COMPLIANCE_DIR / "claims.yaml").read_text(encoding="utf-8"))
    trained = {x for c in spec["claims"].values() for key in ("examples", "fine") for xs in c[key].values()
               for x in xs}
    bench = {x for lang in PARAPHRASES.values() for xs in lang.values() for x in xs} | \
        {x for xs in BENCH_FINE.values() for x in xs}
    assert not trained & bench
    assert not {c for c in CLAIMS + FINE} & trained


def test_finetune_claims_trains_loads_and_reports(tmp_path: Path, embed_model: str) -> None:
    """`docqa finetune claims` on a small claims.yaml and a clean file, with the English MiniLM."""
    from click.testing import CliRunner

    from service.cli import cli

    spec = yaml.safe_load((DEFAULT_COMPLIANCE_DIR / "claims.yaml").read_text(encoding="utf-8"))
    spec["claims"] = {"returns": spec["claims"]["returns"]}
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    clean = tmp_path / "clean.md"
    clean.write_text("\n\n".join(f"第{i}段。本公司第{i}季度营业收入为{i * 7}亿元，同比增长{i}%。"
                                 "董事会审议通过了年度报告。" for i in range(1, 80)), encoding="utf-8")
    out = CliRunner().invoke(cli, ["finetune", "claims", "--dir", str(tmp_path), "--clean", str(clean),
                                    "--encoder", embed_model, "--seed", "3",
                                    "--source", "clean.md=written for the test"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "held out: claims caught" in out.output
    model = ClaimModel.load(tmp_path)
    assert model is not None and model.encoder == embed_model and set(model.centroids) == {"returns"}
    card = (tmp_path / "CLAIMS_MODEL.md").read_text(encoding="utf-8")
    assert "seed 3" in card and "written for the test" in card and "held out" in card
    raw = json.loads((tmp_path / "claims_model.json").read_text(encoding="utf-8"))
    assert raw["card"]["counts"]["claims"] > 50 and 0.5 <= raw["threshold"] < 1
    bad = CliRunner().invoke(cli, ["finetune", "claims", "--dir", str(tmp_path), "--clean", str(tmp_path / "no.md")])
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_a_quoted_sentence_is_checked_with_the_vector_its_kb_stored_and_gets_the_same_verdict(
        check: ClaimCheck, tmp_path: Path) -> None:
    """An extractive answer quotes passage sentences whose vectors the KB stored at ingest; the claim check
    reuses them (only when the KB's encoder is its own) and decides exactly as when it encodes them."""
    import numpy as np

    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths

    (tmp_path / "d.md").write_text(f"# 客服记录\n\n{CLAIMS[0]}{FINE[0]}\n\n{FINE[1]}{FINE[4]}\n", encoding="utf-8")
    s = load_settings(home=tmp_path / "home", device="cpu", keyphrases=False)
    assert not ingest_paths([tmp_path / "d.md"], "kb", s, progress=False).failures
    kb = KnowledgeBase.open("kb", s)
    assert check.reuses(kb.embedder)
    units = [(u.unit_id, u.text) for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id)]
    known = kb.evidence.sentence_vectors(units)
    assert {CLAIMS[0], FINE[0], FINE[1], FINE[4]} <= set(known)
    assert all(p in known for p in pieces(f"{CLAIMS[0]}[1]{FINE[0]}[1]"))  # its clauses too: nothing to encode
    fresh = check.embedder.encode_docs(list(known))
    assert np.min(np.sum(np.stack(list(known.values())) * fresh, axis=1)) > 0.999  # fp16 on disk, same vectors
    for answer in (f"{CLAIMS[0]}[1]", f"{FINE[0]}[1]{FINE[1]}[2]"):
        with_known, alone = check.find(answer, known), check.find(answer)
        assert (with_known is None) == (alone is None), answer
        if alone is not None:
            assert with_known.text == alone.text and abs(with_known.score - alone.score) < 0.01
    # the stored vector is what is read: a clean sentence given a claim's vector reads as that claim
    assert check.find(FINE[0]) is None and check.find(FINE[0], {FINE[0]: known[CLAIMS[0]]}) is not None
