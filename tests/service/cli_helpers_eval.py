"""``docqa`` for the eval tests: the real command in this process (click's runner), on a given DOCQA_HOME,
with stdout and stderr apart and the exit status (3 for a regression) as a subprocess would give them.
In-process, so the embedding model loads once for the module instead of once per command."""

from __future__ import annotations

import subprocess
from pathlib import Path

from docqa_server import cli


def docqa(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = cli(home, *args, env=env)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)
