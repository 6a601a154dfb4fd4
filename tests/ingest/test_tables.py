"""Tables as Markdown blocks (issue #10): the real DOCX standard's matrix, a real PDF manual's ruled
tables (pdfplumber) running over a page break, HTML spans, cutting by rows with the header repeated,
and an answer that quotes a row with its header."""

from __future__ import annotations

from pathlib import Path

import pytest

from docqa.document import BlockKind
from docqa.text.tables import cells, row_sentences
from docqa.text.tokenize import count_tokens
from ingest.chunking.fixed import chunk_blocks
from ingest.loaders import load_file

pytestmark = pytest.mark.slow  # left out of `make test-fast`

STANDARD = "docx/核电厂定期安全审查指南 第1部分：通用要求（征求意见稿）.docx"
MANUAL = "pdf/WCHNET使用文档.pdf"


@pytest.fixture(scope="module")
def docs(shared_data: Path) -> Path:
    folder = shared_data / "documents_zh"
    if not (folder / STANDARD).is_file() or not (folder / MANUAL).is_file():
        pytest.skip(f"{folder} lacks the DOCX standard or the PDF manual")
    return folder


def tables_of(doc):
    return [b for b in doc.blocks if b.kind == BlockKind.TABLE]


def test_a_docx_table_is_cut_by_rows_with_its_header_in_every_piece(docs):
    doc = load_file(docs / STANDARD)[0]
    [table] = tables_of(doc)
    lines = table.text.split("\n")
    header, body = lines[0], lines[2:]
    assert len(body) == 14 and all(len(cells(x)) == len(cells(header)) == 16 for x in body)
    segs = [s for s in chunk_blocks(doc, max_tokens=200, min_tokens=24) if s.text.startswith("|")]
    assert len(segs) >= 2 and all(count_tokens(s.text) <= 200 or s.text.count("\n") == 2 for s in segs)
    assert all(s.text.split("\n")[0] == header for s in segs)  # header repeated
    assert [x for s in segs for x in s.text.split("\n")[2:]] == body  # every row once, in order
    assert all(not any(c in s.text for c in "。，") for s in segs)  # no prose packed in with a table


def test_pdf_ruled_tables_become_tables_and_run_on_over_a_page_break(docs):
    doc = load_file(docs / MANUAL)[0]
    tables = tables_of(doc)
    config = tables[0]
    assert config.page == 1 and config.text.startswith("| 名称 | 宏定义 | 位定义 | 描述 |\n|---|---|---|---|")
    assert "| TCPMss | WCHNET_TCP_MSS | 0-31 | TCP MSS大小 |" in config.text
    assert "| 保留 | 8-12 | - |" in config.text and "TCP_RETRY_PERIOD | 19-23 |" in config.text  # page 2's rows
    before = doc.blocks[doc.blocks.index(config) - 1]
    assert before.text == "调用WCHNET_ConfigLIB进行库配置，参数如下："
    # the table's text is not also left in the paragraphs around it
    assert not any("TCP MSS大小" in b.text for b in doc.blocks if b.kind == BlockKind.PARAGRAPH)
    assert any("| 函数原型 | uint8_t WCHNET_GetVer(void) |" in t.text for t in tables)


def test_html_spans_are_repeated(tmp_path):
    page = tmp_path / "t.html"
    page.write_text("<html><body><h1>报表</h1><p>下表列出各地数据。</p><table>"
                    "<tr><th rowspan=2>地区</th><th colspan=2>2019年</th></tr>"
                    "<tr><th>上半年</th><th>下半年</th></tr>"
                    "<tr><td>北京</td><td>1</td><td rowspan=2>2</td></tr><tr><td>上海</td><td>3</td></tr>"
                    "</table><p>完。</p></body></html>", encoding="utf-8")
    doc = load_file(page)[0]
    [table] = tables_of(doc)
    assert table.text == ("| 地区 | 2019年 上半年 | 2019年 下半年 |\n|---|---|---|\n| 北京 | 1 | 2 |\n| 上海 | 3 | 2 |")
    assert row_sentences(table.text) == ["地区：北京；2019年 上半年：1；2019年 下半年：2",
                                         "地区：上海；2019年 上半年：3；2019年 下半年：2"]
    assert [b.text for b in doc.blocks if b.kind == BlockKind.PARAGRAPH] == ["下表列出各地数据。", "完。"]


def test_an_answer_quotes_a_row_with_its_header(docs, tmp_path, embed_model):
    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths
    from service.answering import answer_question

    settings = load_settings(home=tmp_path / "home", device="cpu")
    assert not ingest_paths([docs / MANUAL], "manual", settings, progress=False).failures
    kb = KnowledgeBase.open("manual", settings)
    try:
        r = answer_question(kb, "TCP_RETRY_PERIOD 的位定义是多少？")
        assert not r.refused and "宏定义：TCP_RETRY_PERIOD；位定义：19-23" in r.answer, r.answer
        assert r.citations[0]["text"].startswith("| 名称 | 宏定义 | 位定义 | 描述 |")
    finally:
        kb.close()
