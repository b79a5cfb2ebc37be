# The two commands: `make run` (kontainers locally) and `make test` (the whole suite).
# Both create .venv when missing and build (or reuse) the pinned control-plane binaries.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STATE  ?= .state
PYTEST_ARGS ?=

.PHONY: test unit run build venv node-deps manifests bench

test: venv build node-deps
	$(PY) -m pytest -ra $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -ra tests/unit $(PYTEST_ARGS)

run: venv build
	$(VENV)/bin/kontainers dev --state-dir $(STATE)

# manifests/kontainers.yaml and the chart's CRD copy, rendered with the pinned helm (a unit test
# fails when either is stale).
manifests: venv build
	$(PY) manifests/render.py

# Benchmarks print figures and assert nothing about time. The pytest modules (bench_*.py, which
# pytest does not collect by default) run in one session with -s so their figures show; the
# files with a __main__ are scripts (flags in their docstrings) and run one by one.
BENCH_SCRIPTS = $(shell grep -l '^if __name__ == "__main__":' tests/bench/bench_*.py)
BENCH_MODULES = $(filter-out $(BENCH_SCRIPTS),$(wildcard tests/bench/bench_*.py))

bench: venv build
	$(PY) -m pytest -s -ra $(BENCH_MODULES) $(PYTEST_ARGS)
	@set -e; for script in $(BENCH_SCRIPTS); do echo "=== $$script"; $(PY) $$script; done

# Builds only what is missing from ${KONTAINERS_BIN_DIR:-~/.cache/kontainers/bin/<pin-hash>}.
build: venv
	$(PY) -m kontainers.cluster.build

venv: $(VENV)/.installed

# Reinstalls when pyproject.toml changes; the stamp keeps repeated runs fast.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# Node projects of the tests (e.g. the openai npm SDK client), installed from their lockfiles.
node-deps:
	@for dir in $$(find tests -name package.json -not -path '*/node_modules/*' -exec dirname {} \;); do \
		echo "npm install in $$dir"; \
		if [ -f "$$dir/package-lock.json" ]; then npm ci --prefix "$$dir" --no-audit --no-fund; \
		else npm install --prefix "$$dir" --no-audit --no-fund; fi || exit 1; \
	done
