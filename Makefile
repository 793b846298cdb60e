# organsim: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: setup demo test test-fast lint dashboard clean

setup: $(STAMP)

# torch first, pinned (the CPU build on a CPU machine), then the package with dev extras under the
# constraints file so a fresh machine gets exactly what CI got.
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,distributed]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/organsim pipeline run pipelines/demo.yaml

# a pytest-xdist worker per core, one numeric thread each; tests/conftest.py groups the tests by file
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist loadgroup

test: $(STAMP)
	$(PYTEST) --durations=15

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check organsim tests bench
	$(BIN)/lint-imports

# the clinicians' dashboard on the outputs of `make demo`; elsewhere:
#   make dashboard ARGS="--cohort DIR --model DIR --report DIR"
dashboard: $(STAMP)
	$(BIN)/streamlit run dashboards/app.py -- $(ARGS)

clean:
	rm -rf $(VENV) demo_out .pytest_cache
