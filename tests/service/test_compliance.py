"""The compliance filter through its public functions, with the real offline embedder and the
bundled prompts/compliance data: blocklist, guard (grounding, citations, drop), snap (hit, stage
fallback, universal fallback), the per-KB configuration and the audit log."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from compliance_support import make_filter

from docqa.settings import ComplianceMode, GuardAction, load_settings
from docqa.text.sentences import split_sentences
from service.compliance import (
    AuditLog,
    Blocklist,
    BlocklistError,
    ComplianceConfigError,
    VerdictKind,
    build_filter,
    check_grounding,
    read_audit,
)
from service.compliance.filter import DEFAULT_DIR

LAW = ("第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；劳动合同期限一年以上不满三年的，"
       "试用期不得超过二个月；三年以上固定期限和无固定期限的劳动合同，试用期不得超过六个月。")
WAGES = "第二十条 劳动者在试用期的工资不得低于本单位相同岗位最低档工资或者劳动合同约定工资的百分之八十。"
HANDBOOK = ("Employees accrue annual leave at a rate of two days per month of service. Unused leave may be "
            "carried over to the next calendar year, up to a maximum of ten days.")


# ---------------------------------------------------------------- blocklist


def test_blocklist_terms_survive_spacing_width_and_case() -> None:
    bl = Blocklist.load(DEFAULT_DIR)
    assert bl.find("这款产品 稳 赚 不 赔，欢迎购买").rule == "稳赚不赔"
    assert bl.find("We offer ＧＵＡＲＡＮＴＥＥＤ   Returns on deposits").rule == "guaranteed returns"
    assert bl.find("找关\u200b系办就能快一点") is not None  # a zero-width space does not hide a term


def test_blocklist_regex_rules_and_whole_words() -> None:
    bl = Blocklist.load(DEFAULT_DIR)
    hit = bl.find("我们承诺您的本金安全")
    assert hit is not None and hit.kind == "regex"
    assert bl.find("您的身份证号是110105199003071234，请核对") is not None
    assert bl.find("We promise you a refund within 7 days.") is not None
    # a Latin term matches whole words only: "sure to winter" is not "sure to win"
    assert bl.find("Make sure to winterize the pipes.") is None


def test_blocklist_does_not_fire_on_the_sample_corpus(examples_docs: Path) -> None:
    """Phrases, not topics: quoting the statutes a desk serves must never trip the blocklist."""
    bl = Blocklist.load(DEFAULT_DIR)
    sentences = [s for p in sorted(examples_docs.glob("*.md")) for line in p.read_text(encoding="utf-8").split("\n")
                 for s in split_sentences(line)]
    assert len(sentences) > 200
    hits = [(s, bl.find(s)) for s in sentences if bl.find(s)]
    assert hits == []


def test_bad_regex_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "blocklist_regex.txt").write_text("# comment\nok\n(unclosed\n", encoding="utf-8")
    with pytest.raises(BlocklistError, match=r"blocklist_regex.txt, line 3: '\(unclosed'"):
        Blocklist.load(tmp_path)


def test_a_blocklisted_fallback_is_refused_at_load(embedder, tmp_path: Path) -> None:
    d = tmp_path / "compliance"
    shutil.copytree(DEFAULT_DIR, d)
    with open(d / "blocklist.txt", "a", encoding="utf-8") as f:
        f.write("\n请问有什么可以帮您\n")  # now the greeting fallback itself is forbidden
    with pytest.raises(ComplianceConfigError, match="greeting"):
        make_filter(embedder, tmp_path, ComplianceMode.GUARD, compliance_dir=d)


def test_blocklist_hit_falls_back_in_every_mode(embedder, tmp_path: Path) -> None:
    for mode in (ComplianceMode.GUARD, ComplianceMode.SNAP):
        v = make_filter(embedder, tmp_path, mode).check("这个理财产品怎么样？", "该产品保本保息，稳赚不赔[1]。",
                                                        [LAW], "consult")
        assert v.kind is VerdictKind.FALLBACK and not v.passed
        assert "稳赚不赔" not in v.text and "blocklist" in v.reason
        assert v.stage == "consult"


# ---------------------------------------------------------------- guard


def test_a_grounded_draft_that_makes_a_forbidden_claim_in_other_words_gets_the_fallback(
        embedder, tmp_path: Path, e5_model: str) -> None:
    """#23 item 4: a leaflet in the KB says it, the draft quotes it, grounding passes it; the claim check
    (claims.yaml, claims_model.json) does not. ``claim_check: false`` turns it off."""
    leaflet = "产品说明：本计划的本金一分都少不了，回报也是板上钉钉的。"
    draft = "本计划的本金一分都少不了，回报也是板上钉钉的[1]。"
    v = make_filter(embedder, tmp_path, ComplianceMode.GUARD).check("这个计划安全吗？", draft, [leaflet], "consult")
    assert v.fallback and v.reason.startswith("claim check:") and "forbidden claim" in v.public_reason
    assert "本金" not in v.public_reason  # the client is never told what was matched
    off = make_filter(embedder, tmp_path, ComplianceMode.GUARD, claim_check=False)
    assert off.claims is None and off.check("这个计划安全吗？", draft, [leaflet], "consult").passed


def test_guard_passes_quotes_without_a_model_call(embedder, tmp_path: Path) -> None:
    draft = f"劳动合同期限三个月以上不满一年的，试用期不得超过一个月[1]；{WAGES[4:]}[2]"
    rep = check_grounding(draft, [LAW, WAGES], embedder, threshold=0.99)
    assert [s.verbatim for s in rep.checked] == [True, True] and rep.grounded
    v = make_filter(embedder, tmp_path, ComplianceMode.GUARD).check("试用期多长？", draft, [LAW, WAGES], "consult")
    assert v.kind is VerdictKind.PASSED and v.passed and v.text == draft


def test_guard_passes_a_paraphrase_and_fails_an_unsupported_claim(embedder, tmp_path: Path) -> None:
    filt = make_filter(embedder, tmp_path, ComplianceMode.GUARD)
    ok = filt.check("How much annual leave do I get?", "You earn two days of annual leave for each month of "
                    "service [1].", [HANDBOOK], "consult")
    assert ok.kind is VerdictKind.PASSED, ok.reason
    bad = filt.check("How much annual leave do I get?", "The company pays a relocation bonus of 5000 dollars "
                     "to every new hire [1].", [HANDBOOK], "consult")
    assert bad.kind is VerdictKind.FALLBACK and bad.reason.startswith("ungrounded")
    assert bad.score is not None and bad.score < filt.config.guard_threshold


def test_guard_rejects_a_citation_of_a_passage_never_given(embedder, tmp_path: Path) -> None:
    v = make_filter(embedder, tmp_path, ComplianceMode.GUARD).check(
        "试用期多长？", f"{LAW[4:40]}[3]", {1: LAW, 2: WAGES}, "consult")
    assert v.kind is VerdictKind.FALLBACK and "[3]" in v.reason


def test_guard_drop_keeps_only_the_supported_sentences(embedder, tmp_path: Path) -> None:
    filt = make_filter(embedder, tmp_path, ComplianceMode.GUARD, guard_action=GuardAction.DROP)
    draft = ("Employees accrue annual leave at a rate of two days per month of service [1]. "
             "Every employee also receives a free company car [1].")
    v = filt.check("What benefits do I get?", draft, [HANDBOOK], "consult")
    assert v.kind is VerdictKind.DROPPED and not v.passed
    assert "two days per month" in v.text and "company car" not in v.text
    nothing_left = filt.check("What benefits?", "Every employee receives a free company car [1].", [HANDBOOK], None)
    assert nothing_left.kind is VerdictKind.FALLBACK  # drop with nothing left is a fallback


# ---------------------------------------------------------------- snap and fallbacks


def test_snap_hit_returns_the_approved_reply(embedder, tmp_path: Path) -> None:
    v = make_filter(embedder, tmp_path, ComplianceMode.SNAP).check(
        "Can I complain?", "We are sorry for the inconvenience. Your complaint has been recorded and a staff "
        "member will contact you within three working days.", [], "complaint")
    approved = [json.loads(x) for x in (DEFAULT_DIR / "approved.jsonl").read_text(encoding="utf-8").split("\n") if x]
    assert v.kind is VerdictKind.SNAPPED and v.reply_id == "complaint-en-1"
    assert v.text == next(r["text"] for r in approved if r["id"] == "complaint-en-1")


def test_snap_miss_uses_the_stage_fallback_then_the_universal_one(embedder, tmp_path: Path) -> None:
    import yaml

    fb = yaml.safe_load((DEFAULT_DIR / "fallbacks.yaml").read_text(encoding="utf-8"))
    filt = make_filter(embedder, tmp_path, ComplianceMode.SNAP)
    draft = "第十九条规定，试用期最长不得超过六个月，工资不低于约定工资的百分之八十。"
    staged = filt.check("我要投诉单位拖欠工资", draft, [], "complaint")
    assert staged.kind is VerdictKind.FALLBACK and staged.text == fb["stages"]["complaint"]["zh"]
    assert "no approved reply close enough" in staged.reason
    for stage in (None, "no_such_stage"):
        uni = filt.check("试用期多长？", draft, [], stage)
        assert uni.kind is VerdictKind.FALLBACK and uni.text == fb["universal"]["zh"] and uni.stage is None
    assert filt.check("How long?", "Probation is six months.", [], None).text == fb["universal"]["en"]


def test_off_mode_and_per_kb_overrides(embedder, tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, compliance="off", kb_compliance={"desk": {"compliance": "snap",
                                                                               "snap_threshold": 0.9}})
    off = build_filter(s, "plain", embedder).check("q", "稳赚不赔", [], None)
    assert off.kind is VerdictKind.SKIPPED and off.text == "稳赚不赔"
    desk = build_filter(s, "desk", embedder)
    assert desk.config.mode is ComplianceMode.SNAP and desk.config.snap_threshold == 0.9
    assert desk.config.audit_path == tmp_path / "desk" / "audit.jsonl"
    with pytest.raises(ValueError, match="unknown key"):
        load_settings(kb_compliance={"desk": {"snap_treshold": 0.9}})


# ---------------------------------------------------------------- audit log


def test_audit_lines_stay_whole_under_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    logs = [AuditLog(path) for _ in range(4)]  # separate objects: no shared lock, like separate processes
    text = "第一行\u2028第二行 " + "长" * 3000  # a long record with a Unicode line separator inside

    def write(w: int) -> None:
        for i in range(50):
            assert logs[w].append({"request_id": f"{w}-{i}", "text": text})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raw = path.read_text(encoding="utf-8")
    assert raw.count("\n") == 200 and "\u2028" not in raw
    records = read_audit(path)
    assert sorted(r["request_id"] for r in records) == sorted(f"{w}-{i}" for w in range(4) for i in range(50))
    assert all(r["text"] == text and r["time"].endswith("Z") for r in records)


def test_an_unwritable_audit_log_does_not_fail_the_reply(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert AuditLog(blocker / "audit.jsonl").append({"request_id": "r"}) is False
