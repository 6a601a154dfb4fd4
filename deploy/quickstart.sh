#!/usr/bin/env bash
# The main job, end to end on one machine, offline:
#   install -> ingest examples/docs into KB "sample" -> docqa serve -> ask two questions over HTTP.
#
#   bash deploy/quickstart.sh          (or: make quickstart)
#
# Environment:
#   DOCQA_HOME   where knowledge bases live (default here: <repo>/.docqa-home, so ~/.docqa is never
#                touched unless you point DOCQA_HOME at it)
#   DOCQA_PORT   port of the server (default 8765); it listens on 127.0.0.1 only
#   DOCQA_READY_TIMEOUT  seconds to wait for /readyz (default 120)
# Exit status is non-zero when any step fails, the server never becomes ready, or an answer is missing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

step() { printf '[quickstart] %s\n' "$*"; }
die() { printf '[quickstart] error: %s\n' "$*" >&2; exit 1; }

bash deploy/install.sh

export DOCQA_HOME="${DOCQA_HOME:-$REPO/.docqa-home}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PORT="${DOCQA_PORT:-8765}"
READY_TIMEOUT="${DOCQA_READY_TIMEOUT:-120}"
URL="http://127.0.0.1:$PORT"
KB="sample"
PY="$REPO/.venv/bin/python"
DOCQA="$REPO/.venv/bin/docqa"

if "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$PORT" 2>/dev/null
then
  die "port $PORT is already in use on 127.0.0.1; stop what listens there or set DOCQA_PORT to a free port"
fi

step "ingesting examples/docs into KB '$KB' (DOCQA_HOME=$DOCQA_HOME)"
"$DOCQA" ingest examples/docs --kb "$KB"

LOG="$(mktemp "${TMPDIR:-/tmp}/docqa-quickstart-serve.XXXXXX.log")"
SERVER_PID=""
stop_server() {
  local status=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $status -eq 0 ]]; then rm -f "$LOG"; else printf '[quickstart] server log kept: %s\n' "$LOG" >&2; fi
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "starting docqa serve --kb $KB on $URL (log: $LOG)"
"$DOCQA" serve --kb "$KB" --host 127.0.0.1 --port "$PORT" >"$LOG" 2>&1 &
SERVER_PID=$!

step "waiting up to ${READY_TIMEOUT}s for $URL/readyz (models loading)"
start=$SECONDS
# 0: ready; 3: the server reports a start-up error (printed), no point in waiting; 1: not yet.
readyz() {
  "$PY" - "$URL/readyz" <<'EOF'
import json, sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError as e:
    try:
        body = json.loads(e.read().decode("utf-8"))
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("status") == "error":
        print(f"[quickstart] error: the server could not load: {body.get('error')}", file=sys.stderr)
        sys.exit(3)
    sys.exit(1)
except Exception:
    sys.exit(1)
EOF
}

while true; do
  probe=0
  readyz || probe=$?
  (( probe == 0 )) && break
  if (( probe == 3 )); then
    printf '[quickstart] last lines of %s:\n' "$LOG" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" && rc=0 || rc=$?
    printf '[quickstart] error: the server exited (status %s) before it was ready; last lines of %s:\n' \
      "$rc" "$LOG" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  if (( SECONDS - start >= READY_TIMEOUT )); then
    printf '[quickstart] error: %s/readyz not ready after %ss; last lines of %s:\n' "$URL" "$READY_TIMEOUT" "$LOG" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  sleep 1
done
step "server ready after $((SECONDS - start))s"

step "asking two questions over HTTP (examples/ask_http.py)"
"$PY" examples/ask_http.py --url "$URL" --kb "$KB" \
  "劳动合同期限一年以上不满三年的，试用期最长是多久？" \
  "How many days of annual leave do full-time employees get per year?" \
  || { rc=$?; printf '[quickstart] error: asking failed; last lines of %s:\n' "$LOG" >&2; tail -n 20 "$LOG" >&2; exit "$rc"; }

step "done. Try more: .venv/bin/docqa ask \"...\" --kb $KB   (with DOCQA_HOME=$DOCQA_HOME)"
