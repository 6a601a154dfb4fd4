"""OCR (issue #10) on scans made here from the real documents of ../shared/data/documents_zh: pages of
the vendor PDFs and of a DOCX standard (through LibreOffice) are rendered to images, rebuilt as an
image-only PDF or saved as image files, then ingested; known sentences of the originals must come
back, in reading order, with page numbers and confidences. Bad scans are reported by name and page.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ingest.loaders import LoadError, load_file
from ingest.loaders.limits import Limits

pytest.importorskip("rapidocr_onnxruntime", reason="OCR needs rapidocr-onnxruntime (a core dependency)")
pdfium = pytest.importorskip("pypdfium2", reason="rendering pages needs pypdfium2 (a core dependency)")
from PIL import Image  # noqa: E402 - after the skip: Pillow comes with the OCR dependencies

pytestmark = pytest.mark.slow  # left out of `make test-fast`

MANUAL = "WCHNET使用文档.pdf"
STANDARD = "核电厂定期安全评价 第12部分：设计（征求意见稿20230317）.docx"


def squash(text: str) -> str:
    return "".join(text.split())


def render(data: bytes, index: int, dpi: int = 200) -> Image.Image:
    doc = pdfium.PdfDocument(data)
    try:
        return doc[index].render(scale=dpi / 72).to_pil().convert("RGB")
    finally:
        doc.close()


def text_layer(data: bytes, index: int) -> str:
    doc = pdfium.PdfDocument(data)
    try:
        return doc[index].get_textpage().get_text_range()
    finally:
        doc.close()


def image_pdf(images: list[Image.Image], path: Path) -> Path:
    images[0].save(path, save_all=True, append_images=images[1:], resolution=200)
    return path


@pytest.fixture(scope="module")
def manual(shared_data: Path) -> bytes:
    path = shared_data / "documents_zh" / "pdf" / MANUAL
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path.read_bytes()


@pytest.fixture(scope="module")
def pages(manual: bytes) -> list[Image.Image]:
    return [render(manual, i) for i in (2, 3)]  # pages 3 and 4: body text, a heading, a table


def test_an_image_only_pdf_is_read_by_ocr_page_by_page(manual, pages, tmp_path):
    scan = image_pdf(pages, tmp_path / "scan.pdf")
    seen = []
    doc = load_file(scan, progress=lambda what, done, total: seen.append((what, done, total)))[0]
    assert doc.meta["ocr_pages"] == [1, 2] and doc.meta["pages"] == 2 and "warnings" not in doc.meta
    text = squash(doc.text)
    for sentence in ("ARP缓存表，用于记录IP地址和MAC地址对应关系。", "MemNum和MemSize是根据用户配置生成的数组"):
        assert squash(sentence) in text, sentence
    assert {b.page for b in doc.blocks} == {1, 2}
    paras = [b for b in doc.blocks if b.kind.value == "paragraph"]
    assert all(b.confidence is not None and 0.5 <= b.confidence <= 1.0 for b in paras)
    # reading order: page 3's text before page 4's, and within the page as the text layer has it
    at = [text.find(squash(s)) for s in ("2.5Mem_ArpTable", "ARP缓存表", "2.6MemNum", "3.1库子程序总表")]
    assert -1 not in at and at == sorted(at), at
    assert seen[0] == ("scan.pdf: OCR page 1", 0, 2) and seen[-1] == ("scan.pdf: OCR", 2, 2)
    with pytest.raises(LoadError, match="OCR is off"):
        load_file(scan, limits=Limits(ocr="never"))


def test_ocr_always_reads_a_page_that_has_a_text_layer(manual, tmp_path):
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(io.BytesIO(manual))
    reader.decrypt("")
    writer = PdfWriter()
    writer.add_page(reader.pages[2])
    one = tmp_path / "one.pdf"
    with one.open("wb") as f:
        writer.write(f)
    auto = load_file(one)[0]
    assert "ocr_pages" not in auto.meta and all(b.confidence is None for b in auto.blocks)
    always = load_file(one, limits=Limits(ocr="always"))[0]
    assert always.meta["ocr_pages"] == [1]
    assert squash("ARP缓存表，用于记录IP地址和MAC地址对应关系") in squash(always.text)


def test_a_blank_page_is_reported_and_the_rest_ingested(pages, tmp_path, embed_model):
    from docqa.kb import KnowledgeBase
    from docqa.search import search
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths

    blank = Image.new("RGB", pages[0].size, "white")
    (tmp_path / "docs").mkdir()
    scan = image_pdf([pages[0], blank], tmp_path / "docs" / "scan.pdf")
    (tmp_path / "docs" / "not-an-image.png").write_text("this is text, not a PNG", encoding="utf-8")
    png = tmp_path / "docs" / "truncated.png"
    buf = io.BytesIO()
    pages[1].save(buf, "PNG")
    png.write_bytes(buf.getvalue()[:5000])
    settings = load_settings(home=tmp_path / "home", device="cpu")
    told = []  # what an upload job shows per file (ingest_paths' on_file)
    report = ingest_paths([tmp_path / "docs"], "scans", settings, progress=False,
                          on_file=lambda path, status, detail: told.append((path and path.name, status, detail)))
    assert [(w.path, w.reason) for w in report.warnings] == [(str(scan), "page 2: OCR found no text")]
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert reasons["not-an-image.png"].startswith("not a readable image: the content is not PNG")
    assert "damaged" in reasons["truncated.png"]
    assert report.added == 1 and report.committed
    last = {name: (status, detail) for name, status, detail in told}
    assert last["scan.pdf"] == ("read", None) and last["not-an-image.png"] == ("failed", reasons["not-an-image.png"])
    assert last["truncated.png"][0] == "failed" and told[-1] == (None, "committing", None)
    assert ("scan.pdf", "reading", "1/2 pages") in told  # the scan's OCR pages as they go
    kb = KnowledgeBase.open("scans", settings)
    try:
        hits = search(kb, "ARP缓存表的作用是什么", 3)
        assert any("ARP缓存表" in h.text and h.page == 1 for h in hits)
        from docqa.document import ocr_confidence

        doc = kb.store.get_doc(hits[0].doc_id)
        conf = [ocr_confidence(u.text, u.page, doc.blocks) for u in kb.store.units_of_doc(doc.doc_id)]
        assert conf and all(c is not None and 0.5 < c <= 1 for c in conf), conf  # every unit came from the scan
    finally:
        kb.close()


def test_image_files_are_documents_and_a_tiff_has_pages(pages, tmp_path):
    png = tmp_path / "page.png"
    pages[0].save(png)
    doc = load_file(png)[0]
    assert doc.meta["format"] == "image" and doc.meta["ocr_pages"] == [1] and doc.title == "page"
    assert squash("ARP缓存表，用于记录IP地址和MAC地址对应关系") in squash(doc.text)
    tif = tmp_path / "two.tiff"
    pages[0].convert("L").save(tif, save_all=True, append_images=[pages[1].convert("L")])  # a grey fax-like scan
    doc = load_file(tif)[0]
    assert doc.meta["pages"] == 2 and {b.page for b in doc.blocks} == {1, 2}
    white = tmp_path / "white.jpg"
    Image.new("RGB", (800, 600), "white").save(white)
    with pytest.raises(LoadError, match="OCR found no text in the image"):
        load_file(white)


def test_two_columns_are_read_column_by_column(manual, tmp_path):
    """Two real pages' text blocks side by side on one sheet: the left column is read whole first."""
    from ingest.loaders import ocr

    def body(i: int) -> Image.Image:
        img = render(manual, i)
        w, h = img.size
        return img.crop((int(0.1 * w), int(0.08 * h), int(0.92 * w), int(0.5 * h)))

    left, right = body(2), body(3)
    sheet = Image.new("RGB", (left.width + right.width + 120, max(left.height, right.height)), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + 120, 0))
    text = squash("".join(p.text for p in ocr.paragraphs(ocr.recognize(sheet), sheet.width)))
    first_left, last_left = text.find(squash("关于WCHNET_RAM_HEAP_SIZE")), text.find(squash("不可以修改"))
    first_right = text.find(squash("WCHNET_SocketRecvLen获取socket接收数据长度"))
    assert -1 not in (first_left, last_left, first_right), text[:300]
    assert first_left < last_left < first_right


@pytest.fixture(scope="module")
def standard_pdf(shared_data: Path, tmp_path_factory) -> bytes:
    from ingest.loaders.legacy_doc import convert, soffice

    src = shared_data / "documents_zh" / "docx" / STANDARD
    exe = soffice()
    if exe is None or not src.is_file():
        pytest.skip("LibreOffice (deploy/install_test_tools.sh installs it) or the DOCX standard is missing")
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True) if shutil.which("fc-list") else None
    if fonts is None or not fonts.stdout.strip():
        pytest.skip("no Chinese font for LibreOffice to draw with (deploy/install_test_tools.sh installs one)")
    work = tmp_path_factory.mktemp("lo")
    (work / "in.docx").write_bytes(src.read_bytes())
    return convert(exe, work / "in.docx", work, src, "pdf")


def test_a_scanned_docx_page_comes_back_as_its_text(standard_pdf, tmp_path):
    scan = image_pdf([render(standard_pdf, 3)], tmp_path / "standard-scan.pdf")
    doc = load_file(scan)[0]
    got = squash(doc.text)
    for line in text_layer(standard_pdf, 3).splitlines():
        if len(squash(line)) >= 20:  # every full line of body text, including indented first lines
            assert squash(line)[:12] in got, line


def test_in_the_parser_process_each_ocr_page_extends_the_time_limit(pages, tmp_path):
    """A scan longer than file_timeout_s is not cut off while its pages keep coming (each may take
    ocr_page_timeout_s), and the pages are reported to the caller from the parser process."""
    from ingest.loaders.isolated import IsolatedLoader

    scan = image_pdf([*pages, pages[0]], tmp_path / "scan.pdf")
    seen = []
    with IsolatedLoader(timeout_s=6, page_timeout_s=120) as loader:
        t0 = time.monotonic()
        doc = loader.load(scan, lambda what, done, total: seen.append(done))[0]
        took = time.monotonic() - t0
    assert doc.meta["ocr_pages"] == [1, 2, 3] and seen == [0, 1, 2, 3]
    assert took > 6 or pytest.skip(f"OCR of 3 pages took {took:.1f} s, under the 6 s file limit: nothing shown")
