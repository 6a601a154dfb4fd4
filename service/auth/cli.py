"""``docqa keys create | list | revoke``: the API keys of this DOCQA_HOME (service/auth/keys.py)."""

from __future__ import annotations

import json

import click


def _store():
    from docqa.settings import load_settings
    from service.auth.keys import KeyStore, keys_path

    return KeyStore(keys_path(load_settings()))


@click.group()
def keys() -> None:
    """API keys: without any, the server only listens on loopback."""


@keys.command()
@click.option("--kb", "kbs", multiple=True, required=True, metavar="NAME", help="A KB the key may use ('*': all).")
@click.option("--role", required=True, type=click.Choice(["reader", "editor", "admin"]))
@click.option("--groups", default="", help="Comma-separated document groups the key may read.")
@click.option("--expires", default=None, metavar="YYYY-MM-DD")
@click.option("--name", default="", help="A label for the key (who or what uses it).")
def create(kbs: tuple[str, ...], role: str, groups: str, expires: str | None, name: str) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from docqa.kb import validate_name

    for kb in kbs:
        if kb != "*":
            validate_name(kb)
    key, rec = _store().create(role=role, kbs=list(kbs), groups=[g for g in groups.split(",") if g.strip()],
                               name=name, expires=expires)
    click.echo(key)
    click.echo(f"created key {rec.id} ({rec.role} on {', '.join(rec.kbs)}); it is shown only now: store it safely",
               err=True)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def list_keys(as_json: bool) -> None:
    """The keys (never their secrets), active, expired or revoked."""
    rows = [r.public() for r in _store().records()]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']}  {r['status']:<8} {r['role']:<7} kbs={','.join(r['kbs'])}  "
                   f"groups={','.join(r['groups'])}  expires={r['expires'] or '-'}  {r['name']}")
    if not rows:
        click.echo("no keys: the server runs in loopback-only mode", err=True)


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id; a running server refuses it from its next request."""
    rec = _store().revoke(key_id)
    click.echo(f"revoked key {rec.id} ({rec.role} on {', '.join(rec.kbs)})")
