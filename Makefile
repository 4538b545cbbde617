# Quick start:  make demo   (main job)   |   make test   (fast test tier, a few minutes)
# make test-all: every test (slow tiers included), lint and the strict docs build (CI runs it)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# Test processes (pytest-xdist; 0 runs in this process) and the JAX compilation cache they
# share: identical programs compiled by different tests or worker processes compile once.
TEST_WORKERS ?= 2
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0.2
# A worker that dies (a test past its timeout) is not replaced: xdist would give the same test
# to the new worker, so a hang would repeat until the run's time is gone.
XDIST = -n $(TEST_WORKERS) --dist loadfile --max-worker-restart 0

.PHONY: venv demo test test-all test-fast lint benchmark emulator pretrained clean docs docs-strict

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools<81" wheel
	$(BIN)/pip install -q -e ".[test]"
	touch $(BIN)/activate

venv: $(BIN)/activate

demo: venv
	$(BIN)/numpyro-diffprior demo --out results

test: venv
	$(BIN)/ruff check numpyro_diffprior tests examples benchmarks
	$(BIN)/pytest -q -ra --durations=10 -m "not slow" $(XDIST)

test-all: venv
	$(BIN)/ruff check numpyro_diffprior tests examples benchmarks
	$(BIN)/pytest -q -ra --durations=15 $(XDIST)
	$(MAKE) docs-strict

# kept for old habits: the same as `make test` without the lint
test-fast: venv
	$(BIN)/pytest -q -m "not slow" $(XDIST)

lint: venv
	$(BIN)/ruff check numpyro_diffprior tests examples benchmarks
	$(BIN)/ruff format --check numpyro_diffprior tests examples benchmarks

benchmark: venv
	$(BIN)/python benchmarks/run_all.py

docs: venv
	$(BIN)/mkdocs build -d site

docs-strict: venv
	$(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) results .pytest_cache .cache
