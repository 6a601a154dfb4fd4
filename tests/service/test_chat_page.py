"""The chat page at ``/`` and the API docs at ``/docs``, driven in headless Chromium (Debian's package,
through Playwright's Python client): enter an API key, pick a KB, watch an answer stream, open a
citation's passage, see a refusal; Swagger UI renders. Every request the browser makes must go to
this server (the page works offline: no CDN)."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import NEEDS_CHROMIUM
from llm_support import Served, build_kb

from docqa.settings import load_settings
from service.auth.access import KeyStore

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]  # slow: left out of `make test-fast`


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from service.app import create_app

    home = build_kb(tmp_path_factory.mktemp("page") / "home")
    key = KeyStore(home / "keys.json").create(role="reader", kbs=["docs"])[0]
    with Served(create_app(settings=load_settings(home=home))) as srv:
        srv.wait_ready(timeout=300)
        yield srv, key


def _page(browser, srv):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, seen, errors


def test_ask_stream_open_a_citation_and_see_a_refusal(server, browser, tmp_path: Path) -> None:
    srv, key = server
    page, seen, errors = _page(browser, srv)
    page.goto(srv.url + "/")
    page.wait_for_selector("#key-form:not([hidden])")  # keys are configured: the page asks for one
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-form[hidden]", state="attached")
    assert page.input_value("#kb") == "docs"

    page.fill("#question", "When does the front desk of the Lisbon office open?")
    page.click("#send")
    answer = page.wait_for_selector(".turn:nth-child(1) .answer.done", timeout=60000)
    assert "08:30" in answer.inner_text() and answer.get_attribute("data-refused") is None
    page.click(".turn:nth-child(1) .answer .cite")
    assert page.is_visible("#passage")
    assert "08:30" in page.inner_text("#passage-text")
    assert "visitors.md" in page.inner_text("#passage-source")
    assert "Visitor policy" in page.inner_text("#passage-label")

    page.fill("#question", "What is the boiling point of tungsten on Mars?")
    page.focus("#question")
    page.keyboard.press("Enter")  # Enter sends, as in every chat box
    refused = page.wait_for_selector(".turn:nth-child(2) .answer.done", timeout=60000)
    assert refused.get_attribute("data-refused") == "true"
    assert "refused" in (refused.get_attribute("class") or "")
    shot = tmp_path / "chat-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not errors, errors
    assert seen and all(u.startswith(srv.url) or u.startswith("data:") for u in seen), seen
    page.close()


def test_a_wrong_key_is_told_and_no_answer_is_shown(server, browser) -> None:
    srv, _ = server
    page, _, errors = _page(browser, srv)
    page.goto(srv.url + "/")
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#key", "dqa_00000000_" + "x" * 43)
    page.click("#key-form button[type=submit]")
    page.wait_for_function("document.querySelector('#key-error').textContent.length > 0")
    assert "invalid, revoked or expired" in page.inner_text("#key-error")
    assert not errors, errors
    page.close()


def test_swagger_ui_renders_offline(server, browser) -> None:
    srv, _ = server
    page, seen, errors = _page(browser, srv)
    page.goto(srv.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30000)
    assert "docqa" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("[data-path='/v1/chat/completions']")
    assert all(u.startswith(srv.url) or u.startswith("data:") for u in seen), seen
    assert not errors, errors
    page.close()
