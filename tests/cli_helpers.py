"""Run `docqa ARGS` in the test's own process (same code as the console script, no second model load)."""

from __future__ import annotations

import sys

from service.cli import main


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``docqa ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["docqa", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
