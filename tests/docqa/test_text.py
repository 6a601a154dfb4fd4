"""Text primitives the index depends on: keyword tokens, sentences, token counts, the fixed chunker."""

from __future__ import annotations

import pytest

from docqa.document import Block, BlockKind, Document
from docqa.lexical import MAX_QUERY_TERMS, terms_for_query
from docqa.text.sentences import split_sentences
from docqa.text.tokenize import STOPWORDS, count_tokens, query_terms, tokenize
from ingest.chunking.fixed import chunk_blocks

# ---------------------------------------------------------------- tokenize


def test_chinese_search_mode_gives_words_and_subwords() -> None:
    toks = tokenize("订立劳动合同")
    assert "劳动合同" in toks and "劳动" in toks and "合同" in toks
    assert "合同法" in tokenize("中华人民共和国劳动合同法")


def test_latin_is_lowercased_and_keeps_joined_words() -> None:
    assert tokenize("The Notice-Period is 3.5 DAYS, e.g. Friday") == ["notice-period", "3.5", "days", "e.g",
                                                                       "friday"]


def test_fullwidth_and_halfwidth_are_the_same_term() -> None:
    assert tokenize("ＡＢＣ１２３") == tokenize("abc123") == ["abc123"]
    assert "2019" in tokenize("２０１９年")


def test_accented_letters_stay_in_their_word() -> None:
    assert tokenize("Café naïve") == ["café", "naïve"]


def test_stopwords_and_punctuation_are_dropped() -> None:
    toks = tokenize("的了，。！？ the of and —— ...")
    assert toks == []
    assert all(t not in STOPWORDS for t in tokenize("什么是劳动合同的试用期？What is probation?"))


def test_duplicates_kept_for_documents_but_not_queries() -> None:
    assert tokenize("合同 合同 合同").count("合同") == 3
    terms = query_terms("合同 合同 试用期 合同")
    assert terms == list(dict.fromkeys(tokenize("合同 合同 试用期 合同")))  # distinct, first-seen order
    assert terms.count("合同") == 1 and terms[0] == "合同" and "试用期" in terms


def test_index_and_query_tokens_agree() -> None:
    """What a document indexes must contain every term of the same words asked as a query."""
    text = "用人单位应当向劳动者支付经济补偿 severance pay"
    assert set(query_terms(text)) <= set(tokenize(text))


def test_query_terms_are_capped() -> None:
    long_query = " ".join(f"word{i}" for i in range(200))
    terms = terms_for_query(long_query)
    assert len(terms) == MAX_QUERY_TERMS and terms[0] == "word0"


# ---------------------------------------------------------------- count_tokens


@pytest.mark.parametrize(("text", "low", "high"), [
    ("劳动合同", 4, 4),  # one per CJK character
    ("", 0, 0),
    ("one two three four five six seven eight nine ten", 12, 14),  # ~1.3 per word
    ("２０１９年", 2, 4),  # full-width digits are a word too
])
def test_count_tokens(text: str, low: int, high: int) -> None:
    assert low <= count_tokens(text) <= high


# ---------------------------------------------------------------- sentences


def test_chinese_sentences_keep_closing_quotes() -> None:
    assert split_sentences("他说：“你好。”然后走了。") == ["他说：“你好。”", "然后走了。"]


def test_english_enders_need_a_space_and_respect_numbers_and_abbreviations() -> None:
    text = "Mr. Smith paid 3.5 dollars. Then he left! Did he? See Art. 5 of the rules"
    assert split_sentences(text) == ["Mr. Smith paid 3.5 dollars.", "Then he left!", "Did he?",
                                     "See Art. 5 of the rules"]


def test_ellipsis_and_semicolon_split_chinese() -> None:
    assert split_sentences("第一条……第二条；第三条") == ["第一条……", "第二条；", "第三条"]


def test_no_text_is_lost_or_invented() -> None:
    text = "甲方应于三日内付款。乙方收款后开具发票！If late, interest applies. 逾期的，按日计息"
    sents = split_sentences(text)
    assert "".join(sents).replace(" ", "") == text.replace(" ", "")
    assert split_sentences("   \n ") == []


# ---------------------------------------------------------------- fixed chunker


def _doc(*blocks: Block) -> Document:
    return Document(doc_id="d1", source="/x.md", title="规章", blocks=list(blocks), content_hash="h")


def _para(text: str, path: list[str]) -> Block:
    return Block(text=text, heading_path=path)


def test_headings_always_cut_and_give_heading_path() -> None:
    doc = _doc(Block("第一章 总则", BlockKind.HEADING, ["第一章 总则"], level=1),
               _para("本规定适用于全体员工，包括试用期员工和正式员工。" * 2, ["第一章 总则"]),
               Block("第二章 考勤", BlockKind.HEADING, ["第二章 考勤"], level=1),
               _para("员工应当按时上下班，迟到三次视为旷工一天。" * 2, ["第二章 考勤"]))
    units = chunk_blocks(doc, max_tokens=256, min_tokens=4)
    assert [u.heading_path for u in units] == [["第一章 总则"], ["第二章 考勤"]]
    assert "考勤" not in units[0].text and "全体员工" not in units[1].text
    assert units[0].keyinfo == "规章 > 第一章 总则"
    assert [u.ord for u in units] == [0, 1]


def test_long_paragraph_is_cut_at_sentence_ends_and_nothing_is_lost() -> None:
    sentence = "劳动者提前三十日以书面形式通知用人单位，可以解除劳动合同。"
    doc = _doc(_para(sentence * 30, []))
    units = chunk_blocks(doc, max_tokens=64, min_tokens=0)
    assert len(units) > 1
    assert all(count_tokens(u.text) <= 64 for u in units)
    assert all(u.text.endswith("。") for u in units)  # cut between sentences, not inside one
    assert "".join(u.text.replace("\n", "") for u in units) == sentence * 30


def test_run_on_sentence_is_hard_cut_within_the_limit() -> None:
    doc = _doc(_para("无标点的超长文本" * 100, []))
    units = chunk_blocks(doc, max_tokens=50, min_tokens=0)
    assert all(count_tokens(u.text) <= 50 for u in units)
    assert "".join(u.text.replace("\n", "") for u in units) == "无标点的超长文本" * 100


def test_short_chunks_merge_with_their_neighbour() -> None:
    doc = _doc(_para("第一条", ["第一章"]), _para("员工享有带薪年休假，具体天数按工龄确定。" * 3, ["第一章"]))
    units = chunk_blocks(doc, max_tokens=40, min_tokens=8)
    assert units[0].text.startswith("第一条\n")
    assert not any(u.text == "第一条" for u in units)


def test_paragraphs_are_packed_up_to_the_limit() -> None:
    paras = [_para(f"第{i}段：员工应遵守公司的各项规章制度。", []) for i in range(10)]
    units = chunk_blocks(_doc(*paras), max_tokens=60, min_tokens=0)
    assert 1 < len(units) < 10
    assert all(count_tokens(u.text) <= 60 for u in units)
    assert sum(u.text.count("第") for u in units) == 10
