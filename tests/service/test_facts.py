"""Facts in answers: a changed number, date, amount or name is ungrounded however similar the sentence.

The guard reads the facts of each draft sentence (docqa/text/facts.py) and looks for them in
the evidence sentences that ground it; these tests swap one fact at a time in sentences that are
otherwise faithful paraphrases of real statute text.
"""

from __future__ import annotations

import pytest

from docqa.text.facts import entities, missing_facts, numbers, zh_numeral
from service.compliance import check_grounding

LAW = ("第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；劳动合同期限一年以上不满三年的，"
       "试用期不得超过二个月；三年以上固定期限和无固定期限的劳动合同，试用期不得超过六个月。")
NOTICE = "七、国庆节：10月1日至7日放假调休，共7天。9月29日（星期日）、10月12日（星期六）上班。"
HANDBOOK = "A SEV1 incident must be acknowledged by the on-call engineer within 15 minutes, and escalated to Dana Wu."


@pytest.mark.parametrize("text, value", [("一百零二", 102), ("十九", 19), ("二", 2), ("两", 2),
                                         ("三千五百万", 35_000_000), ("二〇一九", 2019), ("一亿二千万", 120_000_000),
                                         ("十", 10), ("统一", None)])
def test_chinese_numerals_parse_to_integers(text: str, value: int | None) -> None:
    assert zh_numeral(text) == value


def test_numbers_keep_their_units_and_words_are_no_numbers() -> None:
    got = numbers("劳动合同期限一年以上，试用期不得超过二个月；第十九条；1,200.50元；15%。统一规定，一般情况")
    assert got == {("1", "年"), ("2", "个月"), ("19", "条"), ("1200.5", "元"), ("15", "%")}


@pytest.mark.parametrize("text, want", [
    ("税率为百分之二十五", {("25", "%")}),  # the 百 of 百分之 is no number; 二十五 counts without a unit after it
    ("减按百分之十五的税率", {("15", "%")}),
    ("不超过百分之2.5", {("2.5", "%")}),
    ("不低于工资的百分之多少？", set()),
    ("并处多少万元？", set()),  # 万 alone is a multiplier, not ten thousand of anything
    ("亿元以上，千万不要", set()),
    ("处1万元以上5万元以下", {("10000", "元"), ("50000", "元")}),  # as 一万元 / 五万元 read
    ("赔偿1.5万元", {("15000", "元")}),
    ("处一万元以上五万元以下", {("10000", "元"), ("50000", "元")}),
])
def test_percentages_and_multipliers_read_as_their_values(text: str, want: set) -> None:
    assert numbers(text) == want


def test_a_swapped_percentage_is_a_missing_fact() -> None:
    law = "企业所得税的税率为百分之二十五。符合条件的小型微利企业，减按百分之二十的税率征收企业所得税。"
    assert missing_facts("小型微利企业减按百分之二十的税率征收。", law) == []
    assert missing_facts("小型微利企业减按百分之十五的税率征收。", law) == ["15%"]
    assert missing_facts("罚款1万元。", "处一万元以下的罚款") == []


def test_entities_are_names_and_codes_not_sentence_initial_words() -> None:
    assert entities(HANDBOOK) == {"SEV1", "Dana Wu"}
    assert {"国务院办公厅", "北京市"} <= entities("国务院办公厅通知北京市各区")


@pytest.mark.parametrize("draft, missing", [
    ("试用期不得超过2个月。", []),  # same value, other script
    ("试用期不得超过三年。", []),  # 三年 is in the text (of another clause): fact_window narrows that down
    ("试用期不得超过四个月。", ["4个月"]),
    ("试用期最长二个月，期限为一年以上不满三年。", []),
    ("国庆节放假8天。", ["8天"]),
    ("国庆节10月1日至7日放假，共7天。", []),
])
def test_missing_facts(draft: str, missing: list[str]) -> None:
    evidence = LAW if "试用期" in draft else NOTICE
    assert missing_facts(draft, evidence) == missing


def test_guard_fails_a_swapped_number_that_passes_on_similarity(embedder) -> None:
    good = "劳动合同期限一年以上不满三年的，试用期最长为二个月[1]。"
    bad = "劳动合同期限一年以上不满三年的，试用期最长为六个月[1]。"  # 六个月 is in the passage, for another term
    ok = check_grounding(good, [LAW], embedder, threshold=0.3)
    assert ok.grounded, ok.describe()
    rep = check_grounding(bad, [LAW], embedder, threshold=0.3)
    assert rep.checked[0].score >= 0.3  # as similar as the faithful sentence ...
    assert not rep.grounded and rep.checked[0].missing_facts == ["6个月"]  # ... and still ungrounded
    assert "6个月" in rep.describe()


def test_guard_fails_a_changed_name_and_time_in_english(embedder) -> None:
    ok = check_grounding("SEV1 incidents are acknowledged within 15 minutes and escalated to Dana Wu [1].",
                         [HANDBOOK], embedder, threshold=0.3)
    assert ok.grounded, ok.describe()
    bad = check_grounding("SEV1 incidents are acknowledged within 30 minutes and escalated to Dana Lee [1].",
                          [HANDBOOK], embedder, threshold=0.3)
    assert not bad.grounded and set(bad.checked[0].missing_facts) == {"30", "Dana Lee"}


@pytest.fixture(scope="module")
def embedder():
    from docqa.models.embedder import Embedder

    e = Embedder("intfloat/multilingual-e5-small")
    try:
        e.warm_up()
    except Exception as err:  # noqa: BLE001 - the reason is reported as the skip reason
        pytest.skip(f"multilingual-e5-small is not built ({err}); `docqa models build` makes it")
    return e


def test_number_strings_keep_each_numbers_unit():
    from docqa.text.facts import number_strings

    got = number_strings("试用期不得超过二个月，月薪1,200元，第十九条")
    assert "二个月" in got and "1,200元" in got and "十九条" in got
    assert number_strings("统一规定，一般情况") == []  # a bare 一 inside a word is no number
