# Squeeze3D platform. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PAIR ?= pointnet_lion
STAMP := $(VENV)/.installed

.PHONY: help setup test test-fast lint demo sweep build-dataset train bench clean

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' Makefile | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the CPU wheel on disk (unpinned would pull a CUDA build of several GB)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install torch (CPU) + the project with dev extras

test: $(STAMP)  ## full test suite (unit + integration)
	$(PY) -m pytest -q --timeout=900 tests

test-fast: $(STAMP)  ## unit tests without the slow ones
	$(PY) -m pytest -q -m "not slow and not integration" tests/unit

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check platform jobs tests

demo: $(STAMP)  ## run the core method end to end on the embedded default
	$(PY) jobs/demo.py

# Filled by later issues (they exit with a message until then):
sweep:  ## (placeholder until the sweep issue) Ray Tune over d_C and λ_gram for PAIR
	@echo "make sweep: not implemented yet (Ray Tune sweep issue)"; exit 1
train:  ## (placeholder until the training issue) Ray Train fit for PAIR
	@echo "make train: not implemented yet (Ray Train issue)"; exit 1
bench:  ## (placeholder until the benchmark issues) run the benchmark scripts
	@echo "make bench: not implemented yet"; exit 1

clean:  ## remove the venv and local state
	rm -rf $(VENV) .state
