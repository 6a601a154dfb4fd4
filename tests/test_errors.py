"""One error tree (docqa.errors): every error docqa raises on purpose is a DocqaError, the CLI says which
are the user's (exit 2, one line) and which are bugs (exit 70, "internal error", the traceback under
DOCQA_DEBUG), and the HTTP API answers 422 / 503 for them."""

from __future__ import annotations

import importlib
import pkgutil

import click
import pytest
from cli_helpers import run_main

from docqa.errors import DocqaError, Unavailable, UserError
from service.cli import cli

PACKAGES = ("docqa", "ingest", "service", "finetune")
# carriers of an HTTP status or a click exit code, not errors of docqa's own
NOT_IN_THE_TREE = {"service.errors.ApiError"}


def _exception_classes() -> dict[str, type]:
    found = {}
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, f"{pkg_name}."):
            try:
                mod = importlib.import_module(info.name)
            except ImportError as e:  # an optional extra (vllm, jiagu...) that is not installed
                if info.name.split(".")[0] != "service" or "vllm" not in str(e):
                    raise
                continue
            for name, obj in vars(mod).items():
                if (isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == info.name
                        and not issubclass(obj, click.ClickException)):
                    found[f"{info.name}.{name}"] = obj
    return found


def test_every_error_class_of_docqa_is_in_the_tree():
    classes = _exception_classes()
    assert {"docqa.kb.manifest.KBError", "ingest.loaders.errors.LoadError", "service.llm.base.LLMError",
            "finetune.records.DataFormatError"} <= set(classes), sorted(classes)
    outside = sorted(n for n, c in classes.items() if not issubclass(c, DocqaError) and n not in NOT_IN_THE_TREE)
    assert not outside, f"error classes outside docqa.errors' tree: {outside}"
    # and the tree keeps the builtin bases callers catch
    assert issubclass(UserError, ValueError) and issubclass(Unavailable, RuntimeError)


@pytest.fixture
def failing_command():
    """A `docqa boom --kind K` command that raises what it is told, to drive the real entry point."""
    kinds = {"user": UserError("the file x.pdf is encrypted"), "unavailable": Unavailable("model m is not built"),
             "bug": ValueError("zip() argument 2 is shorter than argument 1")}

    @cli.command("boom")
    @click.option("--kind")
    def boom(kind: str) -> None:
        raise kinds[kind]

    yield
    cli.commands.pop("boom")


def test_the_cli_tells_the_users_mistake_from_a_bug(failing_command, monkeypatch, capsys):
    monkeypatch.delenv("DOCQA_DEBUG", raising=False)
    code, _, err = run_main(monkeypatch, capsys, "boom", "--kind", "user")
    assert (code, err.strip()) == (2, "error: the file x.pdf is encrypted")
    code, _, err = run_main(monkeypatch, capsys, "boom", "--kind", "unavailable")
    assert (code, err.strip()) == (2, "error: model m is not built")
    code, _, err = run_main(monkeypatch, capsys, "boom", "--kind", "bug")  # a plain ValueError is docqa's bug
    assert code == 70 and err.startswith("internal error: ValueError: zip()") and "DOCQA_DEBUG=1" in err
    monkeypatch.setenv("DOCQA_DEBUG", "1")
    with pytest.raises(ValueError, match="shorter"):
        run_main(monkeypatch, capsys, "boom", "--kind", "bug")
