# WedSync Integration Hub. Needs only Python 3.11, git and make.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test install lint typecheck unit bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/wedsync demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on TEST_WORKERS pytest-xdist workers (`make test TEST_WORKERS=0` runs it in one process); worksteal
# hands a worker left idle near the end tests queued for another. See README, Development.
TEST_WORKERS ?= 3
test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) .wedsync .pytest_cache .mypy_cache .ruff_cache
