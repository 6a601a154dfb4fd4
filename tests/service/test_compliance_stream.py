"""Review while streaming (service/compliance/stream.py) with the real offline embedder and the bundled
compliance data: sentences leave one by one once checked, an unfinished sentence never leaves, personal data
split across deltas never leaves unmasked (at every split point), a failing sentence is withheld (drop goes
on, fallback stops), and the verdict matches what was sent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from compliance_support import make_filter

from docqa.screening import mask_pii
from docqa.settings import ComplianceMode, GuardAction, RedactMode
from service.compliance import StreamReview, VerdictKind, streams_by_sentence

LAW = ("第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；劳动合同期限一年以上不满三年的，"
       "试用期不得超过二个月；三年以上固定期限和无固定期限的劳动合同，试用期不得超过六个月。")
DESK = "客户服务中心的咨询热线是 13812345678。也可写信到 zhang.san@example.com，我们两日内答复。"
EVIDENCE = {1: LAW, 2: DESK}
GOOD = "劳动合同期限一年以上不满三年的，试用期不得超过二个月[1]。三年以上固定期限的劳动合同，试用期不得超过六个月[1]。"
PII = "请拨打咨询热线 13812345678[2]。也可写信到 zhang.san@example.com，我们两日内答复[2]。"
RAW = ("13812345678", "zhang.san@example.com")
HANDBOOK = "Employees accrue annual leave at a rate of two days per month of service."


def run(filt, pieces: list[str], question: str = "试用期最长多久？") -> tuple[StreamReview, list[str]]:
    r = StreamReview(filt, question, EVIDENCE, None)
    out = [r.feed(p) for p in pieces] + [r.finish()]
    return r, out


def test_sentences_leave_one_by_one_and_an_unfinished_one_is_held(embedder, tmp_path: Path) -> None:
    filt = make_filter(embedder, tmp_path, ComplianceMode.GUARD)
    assert streams_by_sentence(filt)
    first = GOOD.index("。") + 1
    r = StreamReview(filt, "试用期最长多久？", EVIDENCE, None)
    assert r.feed(GOOD[:first - 1]) == ""  # no full stop yet: held
    assert r.feed("。") == GOOD[:first]  # a full-width full stop ends it at once
    assert r.feed(GOOD[first:-1]) == ""
    assert r.finish() == GOOD[first:-1]  # the end of the answer ends the last sentence, full stop or not
    v = r.verdict(r.sent)
    assert v.kind is VerdictKind.PASSED and v.text == GOOD[:-1] and r.grounded == 2, v
    # an ASCII full stop waits for what follows it ("3." may go on as "3.5"), markers for more markers
    r = StreamReview(filt, "How long?", {1: HANDBOOK}, None)
    assert r.feed("Employees accrue annual leave at a rate of two days per month of service.") == ""
    assert r.feed(" [1]") == "" and r.feed(" Unused") == "Employees accrue annual leave at a rate of two days " \
        "per month of service. [1] "


def test_three_character_deltas_give_the_whole_reviewed_answer(embedder, tmp_path: Path) -> None:
    filt = make_filter(embedder, tmp_path, ComplianceMode.GUARD)
    r, out = run(filt, [GOOD[i:i + 3] for i in range(0, len(GOOD), 3)])
    assert [o for o in out if o] == ["劳动合同期限一年以上不满三年的，试用期不得超过二个月[1]。",
                                     "三年以上固定期限的劳动合同，试用期不得超过六个月[1]。"]


@pytest.mark.parametrize("mode", [ComplianceMode.OFF, ComplianceMode.GUARD])
def test_personal_data_split_across_two_deltas_never_leaves_unmasked(embedder, tmp_path: Path, mode) -> None:
    filt = make_filter(embedder, tmp_path, mode, redact=RedactMode.MASK)
    want = mask_pii(PII)
    assert all(v not in want for v in RAW)
    for i in range(1, len(PII)):
        r, out = run(filt, [PII[:i], PII[i:]], "客服热线和邮箱是什么？")
        sent = "".join(out)
        for so_far in ("".join(out[:k]) for k in range(1, len(out) + 1)):
            assert not any(v in so_far for v in RAW) and not re.search(r"\d{7}", so_far), (i, so_far)
        assert sent == want, (i, sent)
        v = r.verdict(sent)
        assert v.kind is VerdictKind.REDACTED and v.text == want and "personal data masked" in v.public_reason
    # one character at a time too
    r, out = run(filt, list(PII), "客服热线和邮箱是什么？")
    assert "".join(out) == want


def test_redact_refuse_stops_at_the_sentence_with_personal_data(embedder, tmp_path: Path) -> None:
    filt = make_filter(embedder, tmp_path, ComplianceMode.GUARD, redact=RedactMode.REFUSE)
    draft = GOOD.split("。")[0] + "。" + PII
    assert "13812345678" in draft
    r, out = run(filt, [draft[i:i + 4] for i in range(0, len(draft), 4)])
    assert "".join(out) == GOOD.split("。")[0] + "。"
    assert r.failed is not None and r.verdict("x").fallback and "personal data" in r.failed.reason


def test_an_ungrounded_sentence_is_withheld_then_fallback_or_drop(embedder, tmp_path: Path) -> None:
    bad = "The new metro line opens next May, and tickets will be free for a year [1]. "
    draft = GOOD.split("。")[0] + "。" + bad + GOOD.split("。")[1] + "。"
    stop = make_filter(embedder, tmp_path, ComplianceMode.GUARD)
    r, out = run(stop, [draft[i:i + 5] for i in range(0, len(draft), 5)])
    assert "".join(out) == GOOD.split("。")[0] + "。" and r.failed is not None
    assert r.verdict("ignored").fallback and "not supported" in r.failed.public_reason
    assert "六个月" not in r.draft[-8:] or len(r.draft) < len(draft)  # nothing more is reviewed once it failed
    drop = make_filter(embedder, tmp_path, ComplianceMode.GUARD, guard_action=GuardAction.DROP)
    r, out = run(drop, [draft[i:i + 5] for i in range(0, len(draft), 5)])
    sent = "".join(out)
    assert "metro" not in sent and sent.startswith(GOOD.split("。")[0]) and sent.endswith("六个月[1]。"), sent
    v = r.verdict(sent)
    assert v.kind is VerdictKind.DROPPED and v.text == sent and r.dropped and "metro" in r.dropped[0]


def test_a_blocklisted_term_across_a_release_boundary_is_caught(embedder, tmp_path: Path) -> None:
    """The blocklist sees all the text kept so far plus the new piece, as the whole-draft check does: a line
    break releases "…保本" alone (harmless), and "保息" on the next line completes the term 保本保息."""
    filt = make_filter(embedder, tmp_path, ComplianceMode.GUARD)
    draft = "劳动合同期限一年以上不满三年的，试用期不得超过二个月，保本\n保息，欢迎购买[1]。"
    assert filt.check("试用期最长多久？", draft, EVIDENCE).fallback
    r, out = run(filt, [draft[i:i + 2] for i in range(0, len(draft), 2)])
    assert out[0] == "" and "保本\n" in "".join(out) and "保息" not in "".join(out)
    assert r.failed is not None and "保本保息" in r.failed.reason


def test_a_refusal_needs_no_grounding_and_snap_does_not_stream(embedder, tmp_path: Path) -> None:
    filt = make_filter(embedder, tmp_path, ComplianceMode.GUARD)
    r, out = run(filt, ["根据已知信息无法", "回答该问题。"], "火星上有几家分行？")
    assert "".join(out) == "根据已知信息无法回答该问题。" and r.failed is None
    assert r.verdict("根据已知信息无法回答该问题", refused=True).kind is VerdictKind.SKIPPED
    assert r.verdict(r.sent).fallback  # not flagged a refusal by the answerer: nothing was grounded
    assert not streams_by_sentence(make_filter(embedder, tmp_path, ComplianceMode.SNAP))
