# govjax: `make demo` and `make test` each set up .venv first (skipped when up to date).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0

.PHONY: setup demo test test-fast test-multidevice lint bench clean

setup: $(STAMP)

# constraints.txt pins every package to the versions the tests last passed with (reproducible installs);
# pyproject.toml keeps the ranges a library declares.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.demo

# The main run shares one fresh on-disk compilation cache: the many tiny training runs compile the same programs
# (about a quarter of the suite's time).
test: lint
	JAX_COMPILATION_CACHE_DIR=$$(mktemp -d) JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
	  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 $(BIN)/python -m pytest tests govjax --doctest-modules --ignore=tests/multidevice -p no:cacheprovider --durations=25
	@if [ -d tests/multidevice ]; then \
	  XLA_FLAGS=--xla_force_host_platform_device_count=4 $(BIN)/python -m pytest tests/multidevice -p no:cacheprovider --durations=10; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check govjax experiments tests
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache
