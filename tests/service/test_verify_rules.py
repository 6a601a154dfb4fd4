"""The verifier's rules without a model: which facts of a draft sentence are asked about, the question
each becomes, and when the reader's answer agrees with the draft (service/compliance/verify.py)."""

from __future__ import annotations

from service.compliance.verify import agrees, blank, facts_of


def test_facts_are_numbers_with_their_units_and_names():
    facts = facts_of("张三于2019年入职北京分公司，试用期为二个月，月薪8,000元。")
    assert "二个月" in facts and any(f.startswith("8,000") for f in facts)
    assert len(facts) <= 3
    assert facts_of("试用期包含在劳动合同期限内。") == []
    assert "Normandy" in facts_of("The Normans gave their name to Normandy in France.") or \
        "France" in facts_of("The Normans gave their name to Normandy in France.")


def test_a_fact_becomes_the_question_word():
    assert blank("试用期不得超过二个月。", "二个月") == "试用期不得超过多少？"
    assert blank("合同由法务部审核。", "法务部") == "合同由什么审核？"
    assert blank("Backups are kept for 30 days.", "30 days") == "Backups are kept for how many?"


def test_answers_agree_by_value_or_text():
    assert agrees("2个月", "二个月") and agrees("两个月", "二个月") and not agrees("三个月", "二个月")
    assert agrees("8000元", "8,000元") and not agrees("六个月", "二个月")
    assert agrees("北京市海淀区", "海淀区") and not agrees("上海", "北京")
    assert agrees("the Normans", "Normans") and not agrees("", "Normans")
