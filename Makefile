PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/fraud compile
	touch $@

demo: install
	$(BIN)/fraud demo --workdir .demo

# three pytest-xdist workers on two cores, each file on one worker (its module fixtures built once; the
# live-scorer tests' broker and registered bundle once per worker: tests/integration/conftest.py);
# the third worker fills the time the broker, scorer-process and model-server tests spend waiting (their files
# use 55-65 % of their wall time in CPU): 147 s against 173 s with two, same machine back to back;
# TEST_WORKERS=0 runs the suite in one process (a machine whose cores are busy: no second worker's overhead)
TEST_WORKERS ?= 3

# PYTHONDONTWRITEBYTECODE= : the run keeps compiled modules in __pycache__ (gitignored) even where the shell sets
# PYTHONDONTWRITEBYTECODE. Without that cache every worker rewrites the asserts of every test file it collects
# and every worker and CLI or scorer subprocess compiles the modules it imports, each time: a worker's collection
# takes 4.2 s of CPU instead of 6.2 s; the suite 171.6 s / 281.5 s user CPU against 174.5 s / 284.7 s, back to back
test: install
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
