"""Image files (.png .jpg .jpeg .tif .tiff .bmp .webp) as documents, read by OCR (``ocr.py``).

Each frame of a multi-page TIFF is a page. The image is checked before it is decoded: Pillow reads
only the header to learn its size, and an image over ``MAX_PIXELS`` (a decompression bomb, or a
poster scanned at 1200 dpi) is refused by name; a large one is scaled down to ``MAX_SIDE`` pixels
on its long side first (the detector works at 2,000 pixels anyway). Paragraphs come back in reading
order with their recognition confidence, and the page-rebuilding rules of the PDF loader apply
(running headers, page numbers, paragraphs across pages).
"""

from __future__ import annotations

import io
from pathlib import Path

from docqa.document import Document
from ingest.loaders._builder import file_document
from ingest.loaders.errors import LoadError
from ingest.loaders.limits import DEFAULT_LIMITS, Limits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MAX_PIXELS = 150_000_000  # per frame, before decoding
MAX_SIDE = 4000


def load_image(path: Path, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Document:
    from PIL import Image, UnidentifiedImageError

    from ingest.loaders import ocr
    from ingest.loaders.pdf import _build_blocks, _drop_headers_footers
    from ingest.loaders.progress import report

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise LoadError(str(path), "not a readable image: the content is not PNG, JPEG, TIFF, BMP or WebP "
                                   "data") from None
    except (OSError, ValueError) as e:
        raise LoadError(str(path), f"not a readable image ({_reason(e)})") from None
    except Image.DecompressionBombError as e:
        raise LoadError(str(path), f"the image is too large to read ({e})") from None
    frames = getattr(img, "n_frames", 1)
    if frames > limits.max_pages:
        raise LoadError(str(path), f"the image has {frames:,} frames, over the {limits.max_pages:,}-page limit "
                                   "(max_pages)")
    pages: list[list[str]] = []
    confidence: dict[tuple[int, str], float] = {}
    warnings: list[str] = []
    for i in range(frames):
        report(f"{path.name}: OCR page {i + 1}", i, frames)
        try:
            img.seek(i)
            if img.width * img.height > MAX_PIXELS:
                raise LoadError(str(path), f"page {i + 1} is {img.width}x{img.height} pixels, over the "
                                           f"{MAX_PIXELS:,}-pixel limit")
            frame = img.copy()
            frame.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale directly
            frame = frame.convert("RGB")
            frame.thumbnail((MAX_SIDE, MAX_SIDE))
        except LoadError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError) as e:  # truncated or corrupt pixel data
            if frames == 1:
                raise LoadError(str(path), f"the image data is damaged ({_reason(e)})") from None
            warnings.append(f"page {i + 1}: the image data is damaged ({_reason(e)})")
            pages.append([])
            continue
        paras = ocr.paragraphs(ocr.recognize(frame), frame.width)
        del frame
        lines: list[str] = []
        for p in paras:
            lines += [p.text, ""]
            confidence[(i + 1, p.text)] = min(p.confidence, confidence.get((i + 1, p.text), 1.0))
        if not lines:
            warnings.append(f"page {i + 1}: OCR found no text")
        pages.append(lines)
    report(f"{path.name}: OCR", frames, frames)
    if not any(pages):
        raise LoadError(str(path), "OCR found no text in the image" + (f" ({'; '.join(warnings[:3])})"
                                                                       if frames > 1 else ""))
    builder = _build_blocks(_drop_headers_footers(pages), confidence)
    meta: dict = {"pages": frames, "ocr_pages": list(range(1, frames + 1))}
    if warnings:
        meta["warnings"] = warnings
    return file_document(path, data, "image", path.stem, builder.blocks, meta)


def _reason(e: Exception) -> str:
    return str(e) or type(e).__name__
