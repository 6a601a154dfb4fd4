"""OCR accuracy and speed on pages rendered from real documents (issue #10).

Pages with a text layer are rendered at --dpi (200 by default) and read by docqa's OCR
(``ingest.loaders.ocr``: PP-OCRv4 through onnxruntime, then reading order); the page's own text layer
is the reference. Sources: the four PDFs of ../shared/data/documents_zh/pdf and the DOCX files of
../shared/data/documents_zh/docx converted to PDF by LibreOffice (needs soffice and a Chinese font).

Character error rate = edit distance / reference length, on two views of the text:
- ``all``: NFKC-normalised, whitespace removed (punctuation, Latin and digits count; reading order of
  tables and headers/footers counts too);
- ``zh``: the Chinese characters only, in order: the body text, which is what the aim is about
  (CER <= 3% on Chinese body text at 200 dpi).
Speed: pages per second of wall time and CPU-seconds per page on this machine (noisy: the CPU-seconds
are the figure to compare).

    python bench/ocr.py [--pages-per-doc 4] [--dpi 200] [--out bench/reports]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "documents_zh"
MIN_ZH_CHARS = 150  # a page with less Chinese text is no body-text page


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (one row at a time; pages are a few thousand characters)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def norm_all(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def norm_zh(text: str) -> str:
    return "".join(ch for ch in text if "\u4e00" <= ch <= "\u9fff")


def sources(tmp: Path) -> list[tuple[str, bytes]]:
    out = [(p.name, p.read_bytes()) for p in sorted((DATA / "pdf").glob("*.pdf"))]
    from ingest.loaders.legacy_doc import convert, soffice

    exe = soffice()
    if exe is None:
        print("no LibreOffice: the DOCX sources are left out", file=sys.stderr)
        return out
    for i, p in enumerate(sorted((DATA / "docx").glob("*.docx"))):
        work = tmp / f"d{i}"
        work.mkdir()
        src = work / "in.docx"
        src.write_bytes(p.read_bytes())
        out.append((p.name + " (LibreOffice PDF)", convert(exe, src, work, p, "pdf")))
    return out


def reference_pages(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    try:
        texts = []
        for i in range(len(doc)):
            page = doc[i]
            tp = page.get_textpage()
            texts.append(tp.get_text_range())
            tp.close()
            page.close()
        return texts
    finally:
        doc.close()


def run(pages_per_doc: int, dpi: int) -> list[dict]:
    from ingest.loaders import ocr

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in sources(Path(tmp)):
            refs = reference_pages(data)
            chosen = [i for i, t in enumerate(refs) if len(norm_zh(t)) >= MIN_ZH_CHARS][:pages_per_doc]
            for i, image in ocr.render_pages(data, chosen, dpi):
                c0, w0 = time.process_time(), time.perf_counter()
                lines = ocr.recognize(image)
                text = "\n".join(p.text for p in ocr.paragraphs(lines, image.width))
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                ref = refs[i]
                ra, oa, rz, oz = norm_all(ref), norm_all(text), norm_zh(ref), norm_zh(text)
                row = {"doc": name, "page": i + 1, "ref_chars": len(ra), "ref_zh": len(rz),
                       "cer_all": edit_distance(oa, ra) / max(len(ra), 1),
                       "cer_zh": edit_distance(oz, rz) / max(len(rz), 1), "cpu_s": cpu, "wall_s": wall,
                       "conf_min": min((ln.confidence for ln in lines), default=0.0)}
                rows.append(row)
                print(f"{name[:40]:40s} p{i + 1:<3d} zh {len(rz):5d}  CER all {row['cer_all']:.2%}  "
                      f"zh {row['cer_zh']:.2%}  {cpu:.1f} CPU-s  {wall:.1f} s", flush=True)
    return rows


def memory(pages: tuple[int, ...] = (2, 12)) -> dict[int, float]:
    """Peak resident memory (MiB) of the parser process reading image-only scans of ``pages`` pages
    (pages of a real manual rendered at 200 dpi): flat when pages are read one image at a time."""
    import pypdfium2 as pdfium

    from ingest.loaders.isolated import IsolatedLoader

    src = pdfium.PdfDocument((DATA / "pdf" / "WCHNET使用文档.pdf").read_bytes())
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in pages:
            images = [src[i % len(src)].render(scale=200 / 72).to_pil().convert("L") for i in range(n)]
            path = Path(tmp) / f"scan{n}.pdf"
            images[0].save(path, save_all=True, append_images=images[1:], resolution=200)
            del images
            with IsolatedLoader(timeout_s=60, page_timeout_s=120) as loader:
                loader.load(path)
                out[n] = loader.last_peak_mb
            print(f"{n}-page scan: parser process peak {out[n]:.0f} MiB", flush=True)
    return out


def summarize(rows: list[dict]) -> dict:
    def pooled(kind: str, n: str) -> float:  # total edits / total reference characters
        return sum(r[f"cer_{kind}"] * r[n] for r in rows) / max(sum(r[n] for r in rows), 1)

    return {"pages": len(rows), "cer_all": pooled("all", "ref_chars"), "cer_zh": pooled("zh", "ref_zh"),
            "cpu_s_per_page": sum(r["cpu_s"] for r in rows) / max(len(rows), 1),
            "pages_per_s": len(rows) / max(sum(r["wall_s"] for r in rows), 1e-9), "cores": os.cpu_count()}


def write_report(rows: list[dict], summary: dict, out: Path, dpi: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = ["# OCR: character error rate and speed (bench/ocr.py)", "",
             f"Pages rendered at {dpi} dpi from the real PDFs and LibreOffice-converted DOCX of "
             "../shared/data/documents_zh, read by `ingest.loaders.ocr` (PP-OCRv4 ONNX + reading order); the "
             "reference is each page's own text layer. `zh`: Chinese characters only (the body text); `all`: "
             "NFKC, whitespace removed, punctuation/Latin/digits and the reading order of tables included.", "",
             f"**Pooled over {summary['pages']} pages: CER zh {summary['cer_zh']:.2%}, CER all "
             f"{summary['cer_all']:.2%}; {summary['cpu_s_per_page']:.1f} CPU-s per page, "
             f"{summary['pages_per_s']:.2f} pages/s wall on {summary['cores']} cores.**", "",
             "Memory: peak resident memory of the parser process reading an image-only scan (pages of a real "
             "manual at 200 dpi), by page count: " + ", ".join(f"{n} pages {mb:.0f} MiB" for n, mb in
                                                         summary.get("peak_mib_by_pages", {}).items())
             + " (one page image at a time).", "",
             "| document | page | ref chars (zh) | CER zh | CER all | CPU-s | lowest line confidence |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['doc']} | {r['page']} | {r['ref_chars']} ({r['ref_zh']}) | {r['cer_zh']:.2%} | "
                     f"{r['cer_all']:.2%} | {r['cpu_s']:.1f} | {r['conf_min']:.3f} |")
    names = dict.fromkeys(r["doc"] for r in rows)
    lines += ["", "Plot labels: " + "; ".join(f"D{i} = {d}" for i, d in enumerate(names, 1)),
              "", "A page whose pictures hold text (screenshots) has more text than its text layer: OCR reads it "
              "and the reference does not, which counts as error here (以太网例程使用注意事项.pdf)."]
    (out / "ocr.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "ocr.json").write_text(json.dumps({"summary": summary, "rows": rows}, ensure_ascii=False, indent=1),
                                  encoding="utf-8")
    fig, ax = plt.subplots(figsize=(9, 4))
    docs = list(dict.fromkeys(r["doc"] for r in rows))  # ASCII labels: the plot font has no Chinese
    labels = [f"D{docs.index(r['doc']) + 1} p{r['page']}" for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [100 * r["cer_zh"] for r in rows], width=0.4, label="CER zh")
    ax.bar([i + 0.2 for i in x], [100 * r["cer_all"] for r in rows], width=0.4, label="CER all")
    ax.axhline(3, color="red", linestyle="--", linewidth=1, label="aim 3% (zh)")
    ax.set_xticks(list(x), labels, rotation=70, fontsize=6)
    ax.set_ylabel("character error rate, %")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ocr.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages-per-doc", type=int, default=4)
    ap.add_argument("--dpi", type=int, default=200)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "reports")
    args = ap.parse_args()
    rows = run(args.pages_per_doc, args.dpi)
    summary = summarize(rows)
    summary["peak_mib_by_pages"] = memory()
    print(json.dumps(summary, indent=1))
    write_report(rows, summary, args.out, args.dpi)


if __name__ == "__main__":
    main()
