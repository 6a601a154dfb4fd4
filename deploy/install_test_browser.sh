#!/usr/bin/env bash
# The browser the chat-page test drives (tests/service/test_chat_page.py): Debian's chromium, headless.
# Idempotent; run by `make test`. Not needed to run docqa itself. Needs root (or sudo) and apt; where
# neither is available it says so and the test skips with that reason.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "[install] chromium not installed and no apt-get here: the chat page test will be skipped" >&2
  exit 0
fi
as_root=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "[install] chromium not installed and not root: the chat page test will be skipped" >&2
    exit 0
  fi
fi
echo "[install] installing chromium (Debian package) for the chat page test"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null; then
  "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
