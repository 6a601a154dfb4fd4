"""The `docqa` console script: KB commands from ingest, answering and serving from here,
fine-tuning from finetune (imported only when used, so `docqa --help` stays fast)."""

from __future__ import annotations

import os
import sys

import click

from docqa.models.cli import models as models_group
from ingest.cli import COMMANDS as KB_COMMANDS
from service.auth.cli import keys as keys_group
from service.evaluation.cli import eval_group

# sentence-transformers and transformers must never try the network when a model is a local dir.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class LazyGroup(click.Group):
    """A group whose `finetune` sub-group is imported on first use."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), "finetune"])

    def get_command(self, ctx, name):
        if name == "finetune":
            try:
                from finetune.cli import finetune
            except ImportError as e:
                raise click.ClickException(f"finetune commands are unavailable: {e}") from None
            return finetune
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="docqa")
def cli() -> None:
    """docqa: question answering over your own documents, with citations."""


for _cmd in KB_COMMANDS:
    cli.add_command(_cmd)
cli.add_command(models_group)
cli.add_command(eval_group)
cli.add_command(keys_group)


@cli.command()
@click.argument("question")
@click.option("--kb", required=True, metavar="NAME")
@click.option("--json", "as_json", is_flag=True)
def ask(question: str, kb: str, as_json: bool) -> None:
    """Answer a question from a knowledge base, with [n] citations."""
    import json

    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from service.answering import answer_question

    if not question.strip():
        raise click.UsageError("the question is empty")
    result = answer_question(KnowledgeBase.open(kb, load_settings()), question)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(result.answer)
    for c in result.citations:
        click.echo(f"  [{c['n']}] {c.get('label') or c['title'] or c['source']}: {c['text'][:120]}")
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)


@cli.command()
@click.option("--kb", default=None, metavar="NAME", help="Serve only this KB (default: every KB under DOCQA_HOME).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--log-level", default="info", show_default=True)
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None,
              help="Server log lines: JSON objects with request ids (default, for log shippers) or text. "
                   "Setting: log_format.")
def serve(kb: str | None, host: str, port: int, log_level: str, log_format: str | None) -> None:
    """Start the HTTP API (native /v1/chat, OpenAI-compatible /v1/chat/completions)."""
    import uvicorn

    from docqa.settings import load_settings
    from service.app import create_app
    from service.auth.access import KeyStore, is_loopback, keys_path
    from service.logs import configure_logging

    settings = load_settings()
    store = KeyStore(keys_path(settings))
    if not is_loopback(host) and not store.any_active():
        raise click.ClickException(
            f"refusing to listen on {host}: no API key is configured ({store.path}), so anyone on the network "
            "could read every KB. Create one with `docqa keys create --kb NAME --role reader`, or serve on "
            "127.0.0.1")
    click.echo(f"docqa: {'API keys required' if store.any_active() else 'loopback-only mode (no API keys)'}",
               err=True)
    configure_logging(log_format or settings.log_format, log_level)
    # uvicorn's own handlers are replaced by ours (log_config=None); its access log by docqa.access
    uvicorn.run(create_app(kb=kb, settings=settings), host=host, port=port, log_level=log_level, log_config=None,
                access_log=False)


@cli.command("mcp")
@click.option("--kb", default=None, metavar="NAME", help="Serve only this KB (default: every KB under DOCQA_HOME).")
@click.option("--key-env", default="DOCQA_API_KEY", show_default=True, metavar="VAR",
              help="Environment variable with the API key whose rights the tools have (needed when the home has "
                   "API keys; without keys, the local admin's).")
def mcp_cmd(kb: str | None, key_env: str) -> None:
    """MCP server on stdio (tools: search, ask, list_kbs, get_document), for an MCP client that starts docqa
    itself. `docqa serve` serves the same tools over streamable HTTP at /mcp."""
    import os

    from docqa.settings import load_settings
    from service.auth.access import LOOPBACK, KeyStore, caller_of, keys_path
    from service.integrations.mcp_server import build_server
    from service.limits import AnswerSlots
    from service.logs import configure_logging
    from service.registry import KBRegistry

    settings = load_settings()
    configure_logging(settings.log_format, "warning")  # stderr: stdout carries the protocol
    store = KeyStore(keys_path(settings))
    caller = LOOPBACK
    if store.any_active():
        key = os.environ.get(key_env, "").strip()
        if not key:
            raise click.ClickException(f"this home has API keys ({store.path}): set {key_env} to the key whose "
                                       "rights the MCP tools should have")
        rec = store.verify(key)
        if rec is None:
            raise click.ClickException(f"the API key in {key_env} is invalid, revoked or expired")
        caller = caller_of(rec)
    registry = KBRegistry(settings, only=kb)
    registry.warm_up()  # before the first tool call: the client waits for initialize, not for a 'still loading'
    if registry.error:
        raise click.ClickException(f"no knowledge base could be loaded: {registry.error}")
    server = build_server(registry, AnswerSlots.from_settings(settings), lambda ctx: caller)
    try:
        server.run("stdio")
    finally:
        registry.closing.set()
        registry.close()


def main() -> None:
    """Entry point: user errors print one clear line, never a traceback (``docqa.errors``)."""
    from pydantic import ValidationError

    from docqa.errors import Unavailable, UserError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: nothing was committed, the knowledge base is as it was", err=True)
        sys.exit(130)
    except (UserError, Unavailable, ValidationError, OSError) as e:  # the user's to fix (a bad setting too)
        click.echo(f"error: {_one_line(e)}", err=True)
        sys.exit(2)
    except Exception as e:  # a bug in docqa, a plain ValueError included
        if os.environ.get("DOCQA_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e} (set DOCQA_DEBUG=1 for details)", err=True)
        sys.exit(70)


def _one_line(e: Exception) -> str:
    """A user error as one line: a pydantic ValidationError (a bad DOCQA_* value or docqa.yaml key)
    becomes "setting NAME: why" instead of its multi-line report."""
    errors = getattr(e, "errors", None)
    if callable(errors) and type(e).__name__ == "ValidationError":
        parts = [f"setting {'.'.join(str(x) for x in err.get('loc', ())) or '?'}: {err.get('msg', '')}"
                 for err in e.errors()]
        return "invalid configuration: " + "; ".join(parts)
    return " ".join(str(e).split("\n"))


if __name__ == "__main__":
    main()
