#!/usr/bin/env bash
# What some tests drive besides Python packages, from Debian: chromium (the chat page test,
# tests/service/test_chat_page.py) and LibreOffice Writer (legacy .doc conversion, tests/ingest/test_legacy_doc.py;
# also what docqa uses in production to read .doc), and a Chinese font (fonts-wqy-microhei: the OCR tests and
# bench/ocr.py render DOCX pages through LibreOffice, which draws Chinese as empty boxes without one). Idempotent; run by `make test`; about 40 s on a fresh
# machine. Needs root (or sudo) and apt; where neither is available it says so and those tests skip with
# that reason.
set -euo pipefail

want=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || want+=(chromium)
command -v soffice >/dev/null 2>&1 || command -v libreoffice >/dev/null 2>&1 || want+=(libreoffice-writer-nogui)
[[ -n "$(fc-list :lang=zh 2>/dev/null)" ]] || want+=(fonts-wqy-microhei)
[[ ${#want[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "[install] ${want[*]} not installed and no apt-get here: the tests that need them will be skipped" >&2
  exit 0
fi
as_root=()
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "[install] ${want[*]} not installed and not root: the tests that need them will be skipped" >&2
    exit 0
  fi
fi
echo "[install] installing ${want[*]} (Debian packages) for the tests"
export DEBIAN_FRONTEND=noninteractive
apt_install() { "${as_root[@]}" apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null; }
apt_install || { "${as_root[@]}" apt-get update -q >/dev/null && apt_install; } || \
  echo "[install] could not install ${want[*]}: the tests that need them will be skipped" >&2
