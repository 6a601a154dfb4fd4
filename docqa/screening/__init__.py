"""Rules for text that must not reach a user or a model unexamined, shared by ingestion and the service:
one normaliser (``normalize``), the blocklist, personal data (``pii``) and screening (``screen``).

The service's compliance filter (service/compliance) applies them to answers, citations and search
hits; ingestion (``screen`` setting) flags or rejects documents with them. ``DEFAULT_COMPLIANCE_DIR``
is the data directory both use unless ``compliance_dir`` says otherwise.
"""

from pathlib import Path

from docqa.resources import prompts_dir
from docqa.screening.blocklist import BlockHit, Blocklist, BlocklistError
from docqa.screening.normalize import Normalized, NormalizerError, check_available, normalize
from docqa.screening.pii import PiiHit, find_pii, mask_pii
from docqa.screening.screen import Flag, screen_text, unsafe_as_evidence

DEFAULT_COMPLIANCE_DIR = prompts_dir() / "compliance"


def compliance_dir(settings) -> Path:
    """The compliance data directory of ``settings`` (``compliance_dir``, else prompts/compliance)."""
    return Path(settings.compliance_dir).expanduser().resolve() if settings.compliance_dir else DEFAULT_COMPLIANCE_DIR


__all__ = ["DEFAULT_COMPLIANCE_DIR", "BlockHit", "Blocklist", "BlocklistError", "Flag", "Normalized",
           "NormalizerError", "PiiHit", "check_available", "compliance_dir", "find_pii", "mask_pii", "normalize",
           "screen_text", "unsafe_as_evidence"]
