"""API keys and rights (issue #11, first step): keys stored as hashes, Bearer auth on every data route,
roles and KBs enforced (a matrix over the routes), refusals logged without the key, and no server on a
network address without keys."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from docqa_server import docqa_cmd, docqa_env, free_port
from llm_support import Served

from docqa.settings import load_settings
from service.auth.access import KeyStore, Role, is_loopback

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXT = {"a": "# 甲制度\n\n访客进入甲办公室须在前台登记，并全程佩戴访客证。\n",
        "b": "# 乙制度\n\n乙部门的报销须在每月五日前提交，逾期顺延至下月。\n"}


def test_keys_are_stored_as_hashes_and_checked_by_id_and_secret(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    key, rec = store.create(role="reader", kbs=["a"], groups=["hr"], name="clerk")
    assert key.startswith(f"dqa_{rec.id}_") and key.split("_", 2)[2] not in (tmp_path / "keys.json").read_text()
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    assert store.verify(key).id == rec.id and store.verify(key[:-1] + ("x" if key[-1] != "x" else "y")) is None
    assert store.verify("dqa_00000000_" + "x" * 43) is None and store.verify("not a key") is None
    assert "hash" not in rec.public() and rec.public()["status"] == "active"
    store.revoke(rec.id)
    assert store.verify(key) is None and store.records()[0].public()["status"] == "revoked"
    old, rec2 = store.create(role="admin", kbs=["*"])
    data = json.loads((tmp_path / "keys.json").read_text())
    for r in data["keys"]:
        if r["id"] == rec2.id:
            r["expires"] = (date.today() - timedelta(days=1)).isoformat()
    (tmp_path / "keys.json").write_text(json.dumps(data))
    assert store.verify(old) is None and not store.any_active()  # expired: and the file change is seen
    with pytest.raises(ValueError, match="in the past"):
        store.create(role="reader", kbs=["a"], expires="2001-01-01")
    with pytest.raises(ValueError, match="unknown role"):
        store.create(role="root", kbs=["a"])


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")


def test_serve_refuses_a_network_address_without_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = subprocess.run([*docqa_cmd(), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                         env=docqa_env(home), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "refusing to listen on 0.0.0.0" in out.stderr and "docqa keys create" in out.stderr


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, embed_model: str):
    from ingest.pipeline import ingest_paths
    from service.app import create_app

    root = tmp_path_factory.mktemp("auth")
    home = root / "home"
    settings = load_settings(home=home, embed_model=MODEL, embed_backend="torch", keyphrases=0)
    for kb, text in TEXT.items():
        (root / f"{kb}.md").write_text(text, encoding="utf-8")
        ingest_paths([root / f"{kb}.md"], kb, settings, progress=False)
    store = KeyStore(home / "keys.json")
    keys = {"reader-a": store.create(role="reader", kbs=["a"])[0],
            "editor-a": store.create(role="editor", kbs=["a"])[0],
            "admin": store.create(role="admin", kbs=["*"])[0],
            "reader-b": store.create(role="reader", kbs=["b"])[0]}
    with Served(create_app(settings=load_settings(home=home))) as srv:
        srv.wait_ready(timeout=300)
        yield srv, keys, store


def _call(srv, method: str, path: str, key: str | None, body: dict | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None and "files" in body:  # a multipart upload
        return httpx.request(method, f"{srv.url}{path}", files=body["files"], headers=headers, timeout=60)
    return httpx.request(method, f"{srv.url}{path}", json=body, headers=headers, timeout=60)


ROUTES = [  # (method, path, body, minimum role, KB it touches)
    ("POST", "/v1/search", {"query": "访客", "kb": "a"}, Role.READER, "a"),
    ("POST", "/v1/search", {"query": "报销", "kb": "b"}, Role.READER, "b"),
    ("POST", "/v1/chat", {"question": "访客要做什么？", "kb": "a"}, Role.READER, "a"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "报销何时提交？"}], "kb": "b"},
     Role.READER, "b"),
    ("POST", "/v1/kbs/a/eval", {"rows": [{"question": "访客要做什么？"}]}, Role.ADMIN, "a"),
    ("GET", "/v1/jobs/0000", None, Role.READER, None),  # any key: 404 unless the job is its own (or an admin's)
    ("GET", "/v1/kbs/a/documents", None, Role.READER, "a"),
    ("GET", "/v1/kbs/b/documents/0000", None, Role.READER, "b"),
    ("GET", "/v1/kbs/a/documents/0000/units", None, Role.READER, "a"),
    ("GET", "/v1/kbs/a/documents?q=%E8%AE%BF", None, Role.READER, "a"),
    ("GET", "/v1/whoami", None, Role.READER, None),
    ("GET", "/v1/jobs?kind=eval", None, Role.READER, None),  # each key sees its own jobs (an admin, its KBs')
    ("DELETE", "/v1/kbs/a/documents/0000", None, Role.EDITOR, "a"),
    ("POST", "/v1/kbs/a/documents", {"files": [("files", ("new.md", "# 新\n\n新文件。\n".encode()))]},
     Role.EDITOR, "a"),
    ("GET", "/v1/keys", None, Role.ADMIN, None),
    ("POST", "/v1/keys", {"kbs": ["a"], "role": "reader", "name": "matrix"}, Role.ADMIN, None),
    ("DELETE", "/v1/keys/0000", None, Role.ADMIN, None),
]
HOLDERS = {"reader-a": (Role.READER, {"a"}), "editor-a": (Role.EDITOR, {"a"}), "admin": (Role.ADMIN, {"a", "b"}),
           "reader-b": (Role.READER, {"b"})}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]} {r[4] or ''}")
def test_every_route_enforces_role_and_kb_for_every_key(keyed, route, caplog) -> None:
    srv, keys, _ = keyed
    method, path, body, need, kb = route
    caplog.set_level(logging.WARNING, logger="docqa.auth")
    for holder, (role, kbs) in HOLDERS.items():
        r = _call(srv, method, path, keys[holder], body)
        allowed = role >= need and (kb is None or kb in kbs)
        if allowed:
            assert r.status_code in (200, 201, 202) or ("/0000" in path and r.status_code == 404), \
                (holder, r.status_code, r.text)
        else:
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_denied", (holder, r.text)
    missing = _call(srv, method, path, None, body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    bad = _call(srv, method, path, keys["admin"][:-2] + "zz", body)
    assert bad.status_code == 401 and "invalid, revoked or expired" in bad.json()["error"]["message"]
    for key in keys.values():  # refusals are logged with the key's id, never the key
        assert key.split("_", 2)[2] not in caplog.text


def test_whoami_says_the_keys_rights_and_units_show_the_chunks(keyed) -> None:
    srv, keys, _ = keyed
    me = _call(srv, "GET", "/v1/whoami", keys["editor-a"]).json()
    assert me["role"] == "editor" and me["kbs"] == ["a"] and me["mode"] == "keys" and me["key_id"]
    docs = _call(srv, "GET", "/v1/kbs/a/documents?q=A.M", keys["reader-a"]).json()
    assert docs["total"] == 1 and docs["documents"][0]["name"] == "a.md"
    assert _call(srv, "GET", "/v1/kbs/a/documents?q=nothing-like-it", keys["reader-a"]).json()["total"] == 0
    units = _call(srv, "GET", f"/v1/kbs/a/documents/{docs['documents'][0]['doc_id']}/units", keys["reader-a"]).json()
    assert units["total"] >= 1 and any("访客" in u["text"] for u in units["units"])
    assert {"unit_id", "level", "label", "page", "heading_path", "text"} <= set(units["units"][0])


def test_kbs_lists_only_the_callers_kbs_and_probes_are_open(keyed) -> None:
    srv, keys, _ = keyed
    assert [k["name"] for k in _call(srv, "GET", "/v1/kbs", keys["reader-b"]).json()["kbs"]] == ["b"]
    assert {k["name"] for k in _call(srv, "GET", "/v1/kbs", keys["admin"]).json()["kbs"]} == {"a", "b"}
    assert _call(srv, "GET", "/v1/kbs", None).status_code == 401
    assert _call(srv, "GET", "/healthz", None).status_code == 200
    assert _call(srv, "GET", "/readyz", None).status_code == 200
    # a key without rights on a KB gets 403 whether or not the KB exists: no probing for names
    assert _call(srv, "POST", "/v1/search", keys["reader-a"], {"query": "x", "kb": "secret"}).status_code == 403


def test_a_revoked_key_is_refused_from_the_next_request(keyed) -> None:
    srv, _, store = keyed
    key, rec = store.create(role="reader", kbs=["a"])
    assert _call(srv, "POST", "/v1/search", key, {"query": "访客", "kb": "a"}).status_code == 200
    store.revoke(rec.id)
    assert _call(srv, "POST", "/v1/search", key, {"query": "访客", "kb": "a"}).status_code == 401


def test_keys_over_http_never_exceed_the_admins_own_rights(keyed) -> None:
    srv, keys, store = keyed
    scoped, _ = store.create(role="admin", kbs=["a"], groups=["hr"], name="a-admin")
    r = _call(srv, "POST", "/v1/keys", scoped, {"kbs": ["b"], "role": "reader"})
    assert r.status_code == 403 and "knowledge bases this admin key has" in r.json()["error"]["message"]
    r = _call(srv, "POST", "/v1/keys", scoped, {"kbs": ["a"], "role": "reader", "groups": ["finance"]})
    assert r.status_code == 403 and "groups this admin key has" in r.json()["error"]["message"]
    r = _call(srv, "POST", "/v1/keys", scoped, {"kbs": ["a"], "role": "reader", "expires": "2001-01-01"})
    assert r.status_code == 422 and "in the past" in r.json()["error"]["message"]
    made = _call(srv, "POST", "/v1/keys", scoped, {"kbs": ["a"], "role": "reader", "groups": ["hr"], "name": "desk"})
    assert made.status_code == 201
    new_key, rec = made.json()["key"], made.json()["record"]
    assert "hash" not in rec and new_key.split("_", 2)[2] not in (store.path.read_text())
    assert _call(srv, "POST", "/v1/search", new_key, {"query": "访客", "kb": "a"}).status_code == 200
    listed = {k["id"] for k in _call(srv, "GET", "/v1/keys", scoped).json()["keys"]}
    assert rec["id"] in listed and not any(r.id in listed for r in store.records() if "b" in r.kbs or "*" in r.kbs)
    other_kb = next(r.id for r in store.records() if r.kbs == ["b"])
    assert _call(srv, "DELETE", f"/v1/keys/{other_kb}", scoped).status_code == 404  # outside its KBs
    assert _call(srv, "DELETE", f"/v1/keys/{rec['id']}", scoped).json()["record"]["status"] == "revoked"
    assert _call(srv, "POST", "/v1/search", new_key, {"query": "访客", "kb": "a"}).status_code == 401


@pytest.mark.parametrize("trust", [False, True])
def test_loopback_mode_does_not_trust_a_request_relayed_by_a_proxy(tmp_path: Path, trust: bool) -> None:
    """#23 item 6: with no API keys every local connection is an admin, so a reverse proxy on the same host
    would open every KB to the network. A relayed request (forwarding headers) is refused unless the
    operator opts in with loopback_trust_proxy."""
    from service.app import create_app

    (tmp_path / "home").mkdir()
    settings = load_settings(home=tmp_path / "home", loopback_trust_proxy=trust)
    with Served(create_app(settings=settings)) as srv:
        srv.wait_ready(timeout=60)
        assert httpx.get(f"{srv.url}/v1/kbs", timeout=30).status_code == 200  # a local caller, as before
        for header in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "10.1.2.3"},
                       {"Via": "1.1 nginx"}):
            r = httpx.get(f"{srv.url}/v1/kbs", headers=header, timeout=30)
            if trust:
                assert r.status_code == 200, r.text
            else:
                assert r.status_code == 403 and "relayed by a proxy" in r.json()["error"]["message"], r.text
        assert httpx.get(f"{srv.url}/healthz", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
