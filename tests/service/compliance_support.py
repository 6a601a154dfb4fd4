"""Helper of the compliance filter tests: a filter for KB "kb" with the bundled compliance data."""

from __future__ import annotations

from pathlib import Path

from docqa.settings import ComplianceMode, load_settings
from service.compliance import ComplianceConfig, ComplianceFilter


def make_filter(embedder, tmp_path: Path, mode: ComplianceMode, **over) -> ComplianceFilter:
    """The filter of KB "kb" under ``tmp_path`` in ``mode``, settings ``over`` applied."""
    s = load_settings(home=tmp_path, compliance=mode, **over)
    return ComplianceFilter(ComplianceConfig.from_settings(s, "kb"), embedder)
