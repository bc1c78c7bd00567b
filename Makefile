# Every target works from a fresh clone: it creates .venv/, installs what it needs and
# starts what it needs. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TL := $(BIN)/tokenledger
export TOKENLEDGER_HOME ?= $(CURDIR)/.tokenledger
export TOKENLEDGER_CACHE ?= $(TOKENLEDGER_HOME)/cache
export TIKTOKEN_CACHE_DIR ?= $(TOKENLEDGER_CACHE)/tiktoken

.PHONY: help install setup demo packages interop test fuzz soak bench lint up down

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing tokenledger and its dependencies into $(VENV)/"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[streams,test,bench]'
	@touch $@

install: $(VENV)/.installed ## create .venv/ and install tokenledger with every extra

setup: install ## also fetch tiktoken ranks (sha256-verified) and the Kafka jars
	@$(TL) setup

demo: setup ## run everything on a simulated day of traffic; writes .tokenledger/report.html
	@$(TL) demo

PACKAGES := chromium nginx prometheus-alertmanager
packages: ## Debian's chromium, nginx and Alertmanager for the tests (apt, as root or with sudo)
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  echo "installing$$missing with apt"; $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; fi

NODE_INTEROP := tests/interop/node
$(NODE_INTEROP)/node_modules/.package-lock.json: $(NODE_INTEROP)/package.json $(NODE_INTEROP)/package-lock.json
	@echo "installing the Node interop apps' packages (npm ci, as locked)"
	@cd $(NODE_INTEROP) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

interop: $(NODE_INTEROP)/node_modules/.package-lock.json ## the Node packages the OTLP interop tests run (npm ci)

test: setup lint packages interop ## install everything, start a broker, run the whole suite
	@$(BIN)/python -m pytest

fuzz: install ## the hostile-input suite with 20,000 examples per property (CI runs 150)
	@TOKENLEDGER_FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q tests/unit/test_hostile_input.py

soak: setup ## sustained load through the whole pipeline (3,000 ev/s for 600 s; TOKENLEDGER_SOAK_RATE, _SECONDS)
	@$(BIN)/python -m bench.soak
	@TOKENLEDGER_FAULT_OUTAGE_S=60 $(BIN)/python -m pytest -q tests/faults

bench: setup ## run the benchmarks in bench/ and write .tokenledger/bench.json
	@$(BIN)/python -m bench

lint: install ## ruff (lint and format) and mypy
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

up: setup ## start Kafka, create topics, migrate ClickHouse; leaves them running
	@$(TL) up

down: install ## stop the local Kafka broker
	@$(TL) down
