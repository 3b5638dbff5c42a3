# notifyq: `make demo` and `make test` do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-stress install redis lint format lock bench clean

demo: install redis
	$(BIN)/notifyq demo

# Three workers, a test file each at a time: the suite mostly waits on real clocks (caps
# windows, receipts, processes starting), so on two cores three files run in the time of
# one (1,370 tests: 465 s with -n 3 against 704 s with -n 2 on this 2-core machine). The
# longest files go first (tests/conftest.py: LONGEST_FIRST), in that order.
PYTEST := $(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder

test: install redis
	$(PYTEST)

# The same suite with a CPU hog on every core (started and stopped by the script): no test
# may depend on how fast processes start or how idle the machine is.
test-stress: install redis
	$(BIN)/python scripts/with-cpu-hog -- $(PYTEST)

# The venv, installed from the pinned versions in constraints.txt (regenerate: make lock).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A redis-server binary: tests and the demo start their own on a free port.
redis:
	@scripts/ensure-redis

# ruff, the one-way imports of [tool.importlinter] and the strict type check of [tool.mypy]
# (pyproject.toml)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^notifyq' > constraints.txt

bench: install redis
	$(BIN)/python bench/caps.py --quick
	$(BIN)/python bench/dispatch.py --quick

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
