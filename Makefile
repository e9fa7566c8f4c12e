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

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
