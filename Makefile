# The two commands: `make run` (kontainers locally) and `make test` (the whole suite).
# Both create .venv when missing and build (or reuse) the pinned control-plane binaries.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STATE  ?= .state
PYTEST_ARGS ?=

.PHONY: test unit run build venv venv-sdk3 node-deps manifests bench

# The openai Python SDK is tested in two environments. .venv holds the product with mitmproxy 11
# (the egress proxy) and openai 2.x, the oldest line supported: 3.x needs h11 >= 0.16, mitmproxy 11
# pins h11 <= 0.14. SDK3_VENV holds the product without the egress extra and the newest openai
# (extra `sdk3`); the Python acceptance modules run there a second time, unchanged, and the egress
# proxy their operator fixture starts comes from .venv (KONTAINERS_EGRESS_PYTHON). A second
# environment for the SDK, not one for the proxy, because users' apps run the SDK beside their own
# dependencies, while the proxy runs only inside the kontainers image (`kontainers[egress]`).
# Both runs always run; the target fails if either does.
SDK3_VENV ?= .venv-sdk3
SDK3_PY   := $(SDK3_VENV)/bin/python
SDK_ACCEPTANCE = $(wildcard tests/acceptance/test_*.py)

test: venv venv-sdk3 build node-deps
	@status=0; \
	echo "=== openai (extra test) in $(VENV): the whole suite"; \
	$(PY) -m pytest -ra $(PYTEST_ARGS) || status=1; \
	echo "=== openai (extra sdk3) in $(SDK3_VENV): $(SDK_ACCEPTANCE)"; \
	KONTAINERS_TEST_EXTRA=sdk3 KONTAINERS_EGRESS_PYTHON=$(abspath $(PY)) \
		$(SDK3_PY) -m pytest -ra $(SDK_ACCEPTANCE) $(PYTEST_ARGS) || status=1; \
	exit $$status

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

venv-sdk3: $(SDK3_VENV)/.installed

$(SDK3_VENV)/.installed: pyproject.toml
	test -x $(SDK3_PY) || $(PYTHON) -m venv $(SDK3_VENV)
	$(SDK3_PY) -m pip install --quiet --disable-pip-version-check -e '.[sdk3]'
	touch $@

# Node projects of the tests (e.g. the openai npm SDK client), installed from their lockfiles.
node-deps:
	@for dir in $$(find tests -name package.json -not -path '*/node_modules/*' -exec dirname {} \;); do \
		echo "npm install in $$dir"; \
		if [ -f "$$dir/package-lock.json" ]; then npm ci --prefix "$$dir" --no-audit --no-fund; \
		else npm install --prefix "$$dir" --no-audit --no-fund; fi || exit 1; \
	done
