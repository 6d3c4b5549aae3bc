# Journey platform. `make help` lists the targets; pass pytest arguments with ARGS="-k name".
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.13.0
ARGS ?=
DATASETS ?= ../shared/datasets


.PHONY: help install demo test lint format bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (Python >= 3.11 required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, from the CPU wheel: any other torch spec would pull GBs of CUDA packages
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv (pip), install torch 2.13.0 (CPU) first, then the project with dev extras

demo: install ## Generate demo data, build features, feast apply, materialise (later: train, serve)
	$(BIN)/journey data generate --dataset demo --replace
	@if [ -d "$(DATASETS)" ]; then \
		$(BIN)/journey data import $(DATASETS)/retailrocket_sample/events.csv.gz --format retailrocket \
			--dataset retailrocket-sample --replace && \
		$(BIN)/journey data import $(DATASETS)/rees46_2019-Oct_head.csv.gz --format rees46 \
			--dataset rees46-sample --replace; \
	else echo "real samples not found at $(DATASETS) (set DATASETS=...): skipped"; fi
	$(BIN)/journey features build --dataset demo
	$(BIN)/journey features apply
	$(BIN)/journey features materialize

test: install ## Run the test suite (integration tests skip without services unless REQUIRE_SERVICES=1)
	$(BIN)/pytest $(ARGS)

lint: install ## ruff (lint + format check) and mypy (strict)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy journey training serving benchmarks
	$(BIN)/mypy feature_repo  # alone: its modules are top-level by design (Feast imports them by name)

format: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## Run the benchmarks; writes reports/bench.json and reports/bench.md
	$(BIN)/python -m benchmarks $(ARGS)

clean: ## Remove generated data, reports and caches (keeps .venv)
	rm -rf data reports .pytest_cache .mypy_cache .ruff_cache .hypothesis
