"""Settings of docqa and of one knowledge base, in one place.

Values come, in increasing priority, from the defaults below, a ``docqa.yaml`` (the file named by
``DOCQA_CONFIG``, else ``./docqa.yaml`` if present) and ``DOCQA_*`` environment variables.
When a knowledge base is created its *build* settings (models, chunker, tokenizer) are written into
its manifest; reopening the KB uses those, so a KB always searches with the models it was built
with. Changing them needs ``docqa reindex``.

The settings are grouped by concern in ``parts.py``; their choices are the enums of ``enums.py``.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from docqa.errors import UserError
from docqa.settings.enums import *  # noqa: F403 (the choices are part of this module's API)
from docqa.settings.enums import __all__ as _ENUMS
from docqa.settings.parts import (
    COMPLIANCE_KEYS,
    BuildSettings,
    ComplianceSettings,
    LLMSettings,
    ParseSettings,
    RetrievalSettings,
    RuntimeSettings,
    ServerSettings,
)

__all__ = [*_ENUMS, "BUILD_KEYS", "COMPLIANCE_KEYS", "BuildSettings", "ComplianceSettings", "LLMSettings",
           "ParseSettings", "RetrievalSettings", "RuntimeSettings", "ServerSettings", "Settings", "load_settings"]

# The build settings: recorded in a KB's manifest, fixed for the life of the KB.
BUILD_KEYS = tuple(BuildSettings.model_fields)


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
            raise UserError(f"{path}: expected a mapping of setting names to values")
        return data

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, required by ABC
        return None, field_name, False


class Settings(BuildSettings, RuntimeSettings, ParseSettings, RetrievalSettings, ServerSettings, ComplianceSettings,
               LLMSettings, BaseSettings):
    """Every setting of docqa and of one knowledge base (the parts' flat keys, from docqa.yaml and DOCQA_*)."""

    model_config = SettingsConfigDict(env_prefix="DOCQA_", extra="ignore")

    home: Path = Field(default=Path("~/.docqa"), description="Where knowledge bases live.")

    def with_overrides(self, over: dict[str, Any]) -> Settings:
        """These settings with ``over`` laid over them, validated like any setting (strings become their
        enums, bounds are checked): the one way every per-KB, tuned or swept value is applied."""
        if not over:
            return self
        checked = self.model_validate({**self.model_dump(), **over}).model_dump(include=set(over))
        return self.model_copy(update=checked)

    def compliance_for(self, name: str) -> Settings:
        """These settings with the KB's ``kb_compliance`` overrides applied (validated)."""
        return self.with_overrides(self.kb_compliance.get(name) or {})

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return Path(os.path.expanduser(str(v))).resolve()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)

    def build_settings(self) -> dict[str, Any]:
        return {k: _plain(getattr(self, k)) for k in BUILD_KEYS}

    def with_build(self, build: dict[str, Any]) -> Settings:
        """These settings with a KB's recorded build settings laid over them."""
        known = {k: v for k, v in build.items() if k in type(self).model_fields}
        if build and "segment_pass" not in build:  # a KB built before the segment pass embedded unit by unit
            known["segment_pass"] = False
        return self.with_overrides(known)


def _plain(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def load_settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
