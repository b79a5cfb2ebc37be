# The two commands: `make run` (kontainers locally) and `make test` (the whole suite).
# Both create .venv when missing and build (or reuse) the pinned control-plane binaries.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STATE  ?= .state
PYTEST_ARGS ?=

.PHONY: test unit run build venv node-deps

test: venv build node-deps
	$(PY) -m pytest -ra $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -ra tests/unit $(PYTEST_ARGS)

run: venv build
	$(VENV)/bin/kontainers dev --state-dir $(STATE)

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
