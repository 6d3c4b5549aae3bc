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
# name:format:file of the real public samples that `make evaluate-real` trains and evaluates on
REAL_SAMPLES := retailrocket:retailrocket:retailrocket_sample/events.csv.gz \
	rees46:rees46:rees46_2019-Oct_head.csv.gz \
	taobao:taobao:taobao_userbehavior_head/UserBehavior_head.csv.gz


.PHONY: help install demo serve evaluate-real analyze-real test lint format bench soak bench-gpu clean

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

# promtool for the Prometheus rule tests: Debian's prometheus package, as root only. Its service must not start (the
# tests start their own on a free port): policy-rc.d denies the start during the install, and it is left disabled.
install: $(STAMP) ## Create .venv (pip), install torch 2.13.0 (CPU) first, then the project with dev extras
	@if ! command -v promtool >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's prometheus package (promtool); its service stays stopped and disabled"; \
		policy=/usr/sbin/policy-rc.d; added=; \
		if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy && chmod +x $$policy && added=1; fi; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			prometheus) >/dev/null; status=$$?; \
		if [ -n "$$added" ]; then rm -f $$policy; fi; \
		systemctl disable prometheus >/dev/null 2>&1 || true; \
		exit $$status; \
	fi

demo: install ## Generate demo data, build features, feast apply, materialise, train + register the three models, map the journey, serve
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
	$(BIN)/journey train propensity --dataset demo --promote
	$(BIN)/journey train next-action --dataset demo --promote
	$(BIN)/journey train next-item --dataset demo --kind auto --promote
	$(BIN)/journey analyze --dataset demo
	$(MAKE) serve

serve: install ## Serve the production models (BentoML) on JOURNEY_SERVE_HOST:JOURNEY_SERVE_PORT (127.0.0.1:3000)
	$(BIN)/bentoml serve serving.service:Journey

.PHONY: up down
# Needs Docker and infra/.env (from infra/compose.env.example); see infra/README.md for training against the stack.
up: install ## Build the Bento + its image, start Redis, PostgreSQL, Journey, Prometheus, Grafana (docker compose)
	$(BIN)/bentoml build --output tag
	$(BIN)/bentoml containerize journey:latest --image-tag journey:latest
	docker compose -f infra/compose.yaml up -d

down: ## Stop the compose stack (keeps its volumes; `docker compose -f infra/compose.yaml down -v` drops them)
	docker compose -f infra/compose.yaml down

# Each sample gets its own data and reports dir, so the demo's features and registry stay as they are. A refusal
# (too few rows, a single class on the test days) is reported and the next model/sample goes on.
evaluate-real: install ## Train and evaluate the three models on each real public sample (reports/real/<name>/)
	@for sample in $(REAL_SAMPLES); do \
		IFS=: read -r name format file <<< "$$sample"; \
		export JOURNEY_DATA_DIR="$(CURDIR)/data/real/$$name" JOURNEY_REPORTS_DIR="$(CURDIR)/reports/real/$$name"; \
		echo "== $$name"; \
		$(BIN)/journey data import "$(DATASETS)/$$file" --format "$$format" --dataset "$$name" --replace || exit 1; \
		$(BIN)/journey features build --dataset "$$name" && $(BIN)/journey features apply >/dev/null || exit 1; \
		for model in propensity next-action next-item; do \
			$(BIN)/journey train "$$model" --dataset "$$name" $$( [ "$$model" = next-item ] && echo --kind auto) || echo "$$name: $$model refused (see above)"; \
		done; \
	done

# Same per-sample dirs as evaluate-real. ARGS go to `journey analyze` (e.g. ARGS="--no-features --seed 7").
analyze-real: install ## Journey analysis (report, chain, user_profile) of each real sample (reports/real/<name>/journey/)
	@for sample in $(REAL_SAMPLES); do \
		IFS=: read -r name format file <<< "$$sample"; \
		export JOURNEY_DATA_DIR="$(CURDIR)/data/real/$$name" JOURNEY_REPORTS_DIR="$(CURDIR)/reports/real/$$name"; \
		echo "== $$name"; \
		$(BIN)/journey data import "$(DATASETS)/$$file" --format "$$format" --dataset "$$name" --replace || exit 1; \
		$(BIN)/journey analyze --dataset "$$name" $(ARGS) || exit 1; \
	done

test: install ## Run the test suite (integration tests skip without services unless REQUIRE_SERVICES=1)
	$(BIN)/pytest $(ARGS)

lint: install ## ruff, mypy (strict), the layer contracts (.importlinter) and deptry (imports = dependencies)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy journey training serving benchmarks cli
	$(BIN)/mypy feature_repo  # alone: its modules are top-level by design (Feast imports them by name)
	$(BIN)/lint-imports
	$(BIN)/deptry .

format: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## Run the benchmarks; writes reports/bench.json and reports/bench.md
	$(BIN)/python -m benchmarks $(ARGS)

soak: install ## Mixed traffic for 10 minutes against a prod-profile deployment (reports/soak/; ARGS="--minutes 2")
	$(BIN)/python -m benchmarks.soak $(ARGS)

bench-gpu: install ## ONNX Runtime CUDA vs CPU on the production models (reports/gpu/; CPU-only report without a GPU)
	$(BIN)/journey bench gpu $(ARGS)

clean: ## Remove generated data, reports and caches (keeps .venv and the tracked reports: perf notes, GPU figures)
	rm -rf data .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find reports -mindepth 1 -maxdepth 1 ! -name perf-notes.md ! -name gpu -exec rm -rf {} + 2>/dev/null || true
	rm -f reports/gpu/cpu-only.*
