"""Fixtures of the service tests: real knowledge bases built with the real CLI.

``kb_home`` (session): a DOCQA_HOME with two KBs, built once with ``docqa ingest``:
``law`` from three files of examples/docs (a statute, a State Council notice, the English handbook) and
``notes``, a one-file KB written here. Servers on it are started by the test modules
(``docqa_server.DocqaServer``).

``embedder`` (module): the offline embedder the compliance filter tests build their filters on
(``compliance_support.make_filter``).

``integration_server`` (session): a real server over ``integration_support.build_home`` (KBs ``regs`` and ``other``,
reader keys with and without a group) for the Dify, MCP and retriever tests, which only read it.

``browser`` (module): headless Chromium (Debian's package) through Playwright, for the page tests
(``browser_support.CHROMIUM``; they skip, saying why, where it is not installed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docqa_server import BUILD_ENV, DOCS, LAW, LAW_FILES, NOTES, NOTES_TEXT, cli


@pytest.fixture(scope="session")
def kb_home(tmp_path_factory: pytest.TempPathFactory, e5_model: str) -> Path:
    """Built with the default encoder (e5_model skips where it is not built)."""
    if not DOCS.is_dir():
        pytest.skip(f"sample corpus {DOCS} is absent")
    root = tmp_path_factory.mktemp("docqa")
    home, notes = root / "home", root / "notes"
    home.mkdir()
    notes.mkdir()
    (notes / "visitor-policy.md").write_text(NOTES_TEXT, encoding="utf-8")
    for kb, srcs in ((LAW, [DOCS / f for f in LAW_FILES]), (NOTES, [notes])):
        out = cli(home, "ingest", *map(str, srcs), "--kb", kb, "--no-progress", env=BUILD_ENV)
        assert out.exit_code == 0, f"docqa ingest --kb {kb} failed ({out.exit_code}):\n{out.output}"
    return home


@pytest.fixture(scope="module")
def embedder(embed_model: str):
    from docqa.models.embedder import Embedder

    e = Embedder(embed_model)
    e.warm_up()
    return e


@pytest.fixture(scope="session")
def integration_server(tmp_path_factory: pytest.TempPathFactory, embed_model: str):
    from integration_support import build_home
    from llm_support import Served

    from docqa.settings import load_settings
    from service.app import create_app

    home, keys = build_home(tmp_path_factory.mktemp("integrations"))
    with Served(create_app(settings=load_settings(home=home))) as srv:
        srv.wait_ready(timeout=300)
        yield srv, home, keys


@pytest.fixture(scope="module")
def browser():
    from browser_support import CHROMIUM

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra (make install)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-dev-shm-usage"])
        yield b
        b.close()
