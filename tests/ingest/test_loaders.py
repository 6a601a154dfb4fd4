"""Loaders on small files built here and on the real Chinese documents in ../shared/data."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from docqa.document import BlockKind, doc_id_for_path, sha256_hex
from ingest.loaders import SUPPORTED_SUFFIXES, LoadError, iter_files, load_file
from ingest.loaders.limits import Limits

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO.parent / "shared" / "data" / "documents_zh"


def real(rel: str) -> Path:
    path = DOCS / rel
    if not path.exists():
        pytest.skip(f"real document not available: {path}")
    return path


def one(path: Path, **kw):
    docs = load_file(path, **kw)
    assert len(docs) == 1
    return docs[0]


def block(doc, start: str):
    return next(b for b in doc.blocks if b.text.startswith(start))


def reason(path, **kw) -> str:
    with pytest.raises(LoadError) as err:
        load_file(path, **kw)
    return err.value.reason


# ---------------------------------------------------------------- DOCX


def test_docx_headings_tables_and_body_order(tmp_path: Path) -> None:
    import docx
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    d = docx.Document()
    d.add_paragraph("年度报告", style="Title")
    d.add_heading("概述", level=1)
    d.add_paragraph("本报告说明\u3000公司的经营情况。")
    d.add_heading("财务数据", level=2)
    table = d.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "项目"
    table.cell(0, 2).text = "金额"
    for i, text in enumerate(["收入", "", "100万元"]):
        table.cell(1, i).text = text
    # a custom style whose outline level sits on the style (like the real "章标题" styles)
    chapter = d.styles.add_style("章标题", 1)
    outline = OxmlElement("w:outlineLvl")
    outline.set(qn("w:val"), "0")
    chapter.element.get_or_add_pPr().append(outline)
    d.add_paragraph("附录", style="章标题")
    d.add_paragraph("表格之后的段落。")
    path = tmp_path / "report.docx"
    d.save(path)

    doc = one(path)
    assert doc.title == "年度报告"
    assert [b.text for b in doc.blocks] == [
        "年度报告",
        "概述",
        "本报告说明 公司的经营情况。",
        "财务数据",
        "| 项目 | 项目 | 金额 |\n|---|---|---|\n| 收入 |  | 100万元 |",  # the merged cell repeated
        "附录",
        "表格之后的段落。",
    ]
    assert block(doc, "| 项目").heading_path == ["概述", "财务数据"]
    appendix = block(doc, "附录")
    assert (appendix.kind, appendix.level, appendix.heading_path) == (BlockKind.HEADING, 1, ["附录"])
    assert block(doc, "表格之后").heading_path == ["附录"]
    assert doc.doc_id == doc_id_for_path(str(path.resolve()))
    assert doc.content_hash == sha256_hex(path.read_bytes())
    assert doc.meta == {"format": "docx", "path": str(path.resolve())}


def test_docx_real_standard_headings_from_style_chain() -> None:
    doc = one(real("docx/核电厂定期安全审查指南 第1部分：通用要求（征求意见稿）.docx"))
    assert doc.title == "核电厂定期安全审查指南 第1部分：通用要求（征求意见稿）"  # not "标准名称"
    item = block(doc, "5.1.1 一般而言，核电厂定期安全评价的范围应包括以下14个安全要素")
    assert item.heading_path == [
        "核电厂定期安全评价 第1部分：通用要求",
        "定期安全评价的策划和准备",
        "确定评价范围和内容",
    ]
    assert not any("\t" in b.text or b.text.startswith("前言 II") for b in doc.blocks)  # TOC skipped
    table = next(b for b in doc.blocks if b.kind.value == "table")  # two header rows, merged cells repeated
    assert table.text.startswith("|  |  | 提供输入的安全要素 SF1 | 提供输入的安全要素 SF2 |")
    assert "\n| 接受输入的安全要素 | SF3 | × | × |  | × |" in table.text


# ---------------------------------------------------------------- HTML

PAGE = """<html><head><title>办事指南</title><style>p{color:red}</style></head><body>
<nav><a href="/">首页</a> | <a href="/news">新闻</a></nav><header><p>网站标题栏</p></header>
<div id="main"><h1>居住证办理</h1><p>申领居住证需要
  提交以下材料：</p>
<ul><li>身份证原件；</li><li>居住证明。</li></ul>
<h2>办理时限</h2><table><tr><th>事项</th><th>时限</th></tr><tr><td>首次申领</td><td>15个工作日</td></tr></table>
<p>第一行<br>第二行</p><div style="display:none">隐藏的统计代码</div></div>
<script>var x = 1;</script><footer>版权所有 联系我们</footer></body></html>"""


def test_html_main_content_headings_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "guide.html"
    path.write_text(PAGE, encoding="utf-8")
    doc = one(path)
    assert doc.title == "办事指南"
    assert [b.text for b in doc.blocks] == [
        "居住证办理",
        "申领居住证需要提交以下材料：",
        "身份证原件；",
        "居住证明。",
        "办理时限",
        "| 事项 | 时限 |\n|---|---|\n| 首次申领 | 15个工作日 |",
        "第一行",
        "第二行",
    ]
    assert block(doc, "| 事项").heading_path == ["居住证办理", "办理时限"]
    assert block(doc, "办理时限").level == 2


def test_html_real_gov_cn_page_is_clean() -> None:
    doc = one(real("html/gov.cn_content_5351181_国务院关于印发个人所得税专项附加扣除暂行办法的通知.html"))
    assert doc.title == "国务院关于印发个人所得税专项附加扣除暂行办法的通知"
    assert doc.blocks[0].text == "国务院关于印发个人所得税"  # the metadata table is gone
    assert not any(s in doc.text for s in ("索 引 号", "扫一扫", "主题分类", "\u3000", "\xa0"))
    first = block(doc, "第一条")
    assert first.heading_path == ["第一章 总 则"] and "\u3000" not in first.text
    assert block(doc, "第十四条").heading_path == ["第五章 住房贷款利息"]


# ---------------------------------------------------------------- Markdown

MD = """---
title: 使用手册
---
# 安装

先安装依赖，
然后运行程序。

配置
----

1. 打开 **设置**；
2. 选择 [网络](http://x)。

| 参数 | 默认值 |
|------|--------|
| port | 8080   |

<!-- INFO END -->

```python
def main():
    return 0
```
"""


def test_markdown_structure(tmp_path: Path) -> None:
    path = tmp_path / "manual.md"
    path.write_text(MD, encoding="utf-8")
    doc = one(path)
    assert doc.title == "使用手册"
    assert [(b.kind.value, b.level, b.text) for b in doc.blocks[:3]] == [
        ("heading", 1, "安装"),
        ("paragraph", 0, "先安装依赖，然后运行程序。"),
        ("heading", 2, "配置"),
    ]
    texts = [b.text for b in doc.blocks]
    assert texts[3:] == [
        "1. 打开 设置；",
        "2. 选择 网络。",
        "| 参数 | 默认值 |\n|---|---|\n| port | 8080 |",
        "def main():\n    return 0",
    ]
    assert doc.blocks[-1].heading_path == ["安装", "配置"]


def test_markdown_real_statute_heading_paths() -> None:
    doc = one(real("md/劳动合同法(2012-12-28).md"))
    assert doc.title == "中华人民共和国劳动合同法"
    article = block(doc, "第五十七条")
    assert article.heading_path == ["中华人民共和国劳动合同法", "第五章 特别规定", "第二节 劳务派遣"]
    chapter = block(doc, "第二章 劳动合同的订立")
    assert (chapter.kind, chapter.level) == (BlockKind.HEADING, 2)
    assert "INFO END" not in doc.text


# ---------------------------------------------------------------- TXT

TXT = (
    "第一章 总则\n\n第一条 为了规范合同行为，保护当事人\n的合法权益，制定本法。\n\n"
    "This paragraph is\nwrapped in English.\n"
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_txt_encodings_paragraphs_and_chinese_headings(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / f"law-{encoding}.txt"
    path.write_bytes(TXT.replace("\n", "\r\n").encode(encoding))
    doc = one(path)
    assert doc.title == path.stem and doc.meta["format"] == "txt"
    assert [(b.kind.value, b.text, b.heading_path) for b in doc.blocks] == [
        ("heading", "第一章 总则", ["第一章 总则"]),
        ("paragraph", "第一条 为了规范合同行为，保护当事人的合法权益，制定本法。", ["第一章 总则"]),
        ("paragraph", "This paragraph is wrapped in English.", ["第一章 总则"]),
    ]


def test_txt_without_blank_lines_is_one_paragraph_per_line(tmp_path: Path) -> None:
    path = tmp_path / "novel.txt"
    path.write_text("\u3000\u3000第一段文字。\n\u3000\u3000第二段\xa0文字。\n", encoding="gb18030")
    assert [b.text for b in one(path).blocks] == ["第一段文字。", "第二段 文字。"]


# ---------------------------------------------------------------- JSONL


def test_jsonl_records_split_on_newline_only(tmp_path: Path) -> None:
    records = [
        {"id": 7, "title": "条款", "text": "第一句\u2028第二句\u0085第三句", "lang": "zh"},
        {"id": "b", "text": "no title here"},
    ]
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n", encoding="utf-8")
    docs = load_file(path)
    assert [d.doc_id for d in docs] == ["7", "b"]
    first = docs[0]
    assert first.source == f"{path.resolve()}#7" and first.title == "条款"
    # the record is not cut at U+2028/U+0085; inside the text they are line breaks
    assert [b.text for b in first.blocks] == ["第一句", "第二句", "第三句"]
    assert first.content_hash == sha256_hex("条款\n" + records[0]["text"])
    assert first.meta == {"lang": "zh", "format": "jsonl", "path": str(path.resolve()), "line": 1}
    assert docs[1].title == "b" and docs[1].meta["line"] == 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"id": 1, "text": "ok"}\n{"id": 2, "text": "broken"\n', "line 2: invalid JSON"),
        ('{"id": 1, "text": "ok"}\n\n{"text": "no id"}\n', "line 3: missing required field 'id'"),
        ('{"id": 1}\n', "line 1: missing required field 'text'"),
        ('{"id": 1, "text": "a"}\n{"id": "1", "text": "b"}\n', "line 2: duplicate id '1'"),
        ("[1, 2]\n", "line 1: expected a JSON object"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, content: str, expected: str) -> None:
    """#23 item 9: a bad record is a failure of its own, with its line; the file's other records load."""
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    good = [ln for ln in content.split("\n") if ln.startswith('{"id": 1, "text": "')]
    if not good:  # no usable record: the file fails, naming the line
        assert reason(path).startswith(expected)
        return
    docs = load_file(path)
    assert [d.doc_id for d in docs] == ["1"]
    assert [why for _, why in docs.failures] and docs.failures[0][1].startswith(expected), docs.failures


# ---------------------------------------------------------------- PDF


def test_pdf_real_pages_headers_and_joined_lines() -> None:
    doc = one(real("pdf/CH32V30x_IAP使用说明.pdf"))  # AES-encrypted with an empty password
    assert doc.meta["pages"] == 3 and doc.title == "CH32V30x_IAP"
    # the running header "CH32V30x_IAP 使用说明 https://wch.cn" / "V1.1 <n>" is gone from every page
    assert not any("V1.1 " in b.text or "使用说明 https" in b.text for b in doc.blocks)
    wrapped = block(doc, "跳转方式 2")
    assert wrapped.page == 2 and "跳转到 APP。APP中同样可以通过指令" in wrapped.text
    assert block(doc, "UART 下载").page == 3


def test_pdf_real_paragraph_runs_across_pages() -> None:
    doc = one(real("pdf/WCHNET使用文档.pdf"))
    assert doc.meta["pages"] == 27
    para = block(doc, "如果有一个客户端连接成功后")
    assert para.page == 26 and "如果应用软件建立多个服务器" in para.text


@pytest.mark.parametrize("password", ["", "secret"])
def test_pdf_encryption(tmp_path: Path, password: str) -> None:
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(real("pdf/WCHNET WEB配置说明.pdf"))
    reader.decrypt("")
    writer = PdfWriter(clone_from=reader)
    writer.encrypt(user_password=password, owner_password="x", algorithm="AES-128")
    path = tmp_path / "encrypted.pdf"
    with path.open("wb") as f:
        writer.write(f)
    if password:
        assert reason(path) == "PDF is password-protected"
    else:  # an empty user password opens without asking (needs `cryptography` for AES)
        doc = one(path)
        assert doc.meta["pages"] == 3 and block(doc, "1.3 支持手动恢复出厂设置").page == 2


def test_pdf_without_text_is_reported_as_scanned(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    path = tmp_path / "scan.pdf"
    with path.open("wb") as f:
        writer.write(f)
    assert reason(path) == "no text found, neither in the text layer nor by OCR (page 1: OCR found no text)"
    assert reason(path, limits=Limits(ocr="never")) == "no text: no text layer and OCR is off (ocr: never)"


# ---------------------------------------------------------------- bad inputs


def _zip_without_word(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "not a word document")
    return path


def test_bad_inputs_have_specific_reasons(tmp_path: Path) -> None:
    pdf = real("pdf/CH32V30x_IAP使用说明.pdf").read_bytes()
    legacy = real("docx/核电厂定期安全审查指南 第1部分：通用要求（征求意见稿）.doc")
    files = {
        "renamed.docx": legacy.read_bytes(),
        "empty.md": b"",
        "blank.txt": b" \n\n\t\n",
        "binary.txt": bytes(range(256)) * 4,
        "binary.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "truncated.pdf": pdf[: len(pdf) // 2],
        "fake.pdf": b"<html>not a pdf</html>",
        "notzip.docx": b"plain text, not a zip",
        "data.xlsx": b"PK\x03\x04",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    _zip_without_word(tmp_path / "archive.docx")
    (tmp_path / "folder").mkdir()

    assert reason(tmp_path / "empty.md") == "file is empty (0 bytes)"
    assert reason(tmp_path / "blank.txt").startswith("no text found")
    assert reason(tmp_path / "binary.txt").startswith("binary content")
    assert reason(tmp_path / "binary.md").startswith("binary content")
    assert reason(tmp_path / "truncated.pdf").startswith("not a valid PDF")
    assert reason(tmp_path / "fake.pdf").startswith("not a valid PDF")
    assert reason(tmp_path / "notzip.docx") == "not a valid DOCX (zip) file"
    assert reason(tmp_path / "archive.docx").startswith("not a valid DOCX")
    assert reason(tmp_path / "renamed.docx").startswith("this is a legacy Word (.doc) file named .docx")
    (tmp_path / "notole.doc").write_bytes(b"plain text named .doc")
    assert reason(tmp_path / "notole.doc").startswith("not a legacy Word (.doc) file")
    assert reason(tmp_path / "data.xlsx").startswith("unsupported file type '.xlsx'; supported: .bmp, .doc, .docx")
    assert reason(tmp_path / "missing.xyz") == "file not found"
    assert reason(tmp_path / "folder") == "is a directory, not a file"
    (tmp_path / "big.txt").write_text("正文" * 1000, encoding="utf-8")
    assert reason(tmp_path / "big.txt", max_bytes=2048) == "file is 5.9 KiB, over the 2 KiB limit (max_file_mb)"


# ---------------------------------------------------------------- folders and the whole corpus


def test_iter_files_walks_folders_and_keeps_named_files(tmp_path: Path) -> None:
    names = "b/z.md b/a.TXT a.pdf .git/x.md c/.hidden.md c/~$lock.docx c/notes.xyz c/d/e.jsonl x.xyz c/old.doc"
    for rel in names.split():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x", encoding="utf-8")
    got = list(iter_files([tmp_path, tmp_path / "x.xyz", tmp_path / "a.pdf"]))  # a.pdf only once
    rel = [p.relative_to(tmp_path).as_posix() for p in got]
    assert rel == ["a.pdf", "b/a.TXT", "b/z.md", "c/d/e.jsonl", "c/old.doc", "x.xyz"]


def test_every_real_document_loads_with_structure() -> None:
    if not DOCS.exists():
        pytest.skip("real documents not available")
    files = list(iter_files([DOCS]))
    assert {p.suffix.lower() for p in files} >= {".pdf", ".docx", ".html", ".md"}
    legacy = [p for p in files if p.suffix.lower() == ".doc"]  # tests/ingest/test_legacy_doc.py reads it
    assert legacy and all(p.suffix.lower() in SUPPORTED_SUFFIXES for p in files)
    for path in (p for p in files if p not in legacy):
        doc = one(path)
        assert doc.blocks and all(b.text == b.text.strip() and b.text for b in doc.blocks), path
        for b in doc.blocks:
            if b.kind is BlockKind.HEADING:
                assert b.heading_path[-1] == b.text and b.level >= 1
        if path.suffix == ".pdf":
            assert all(1 <= b.page <= doc.meta["pages"] for b in doc.blocks)


def test_importing_loaders_does_not_import_parsers() -> None:
    code = (
        "import sys, ingest.loaders; heavy = {'pypdf', 'docx', 'bs4', 'markdown_it', "
        "'charset_normalizer'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
