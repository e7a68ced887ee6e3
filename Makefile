# Every target depends on `setup`, so each works on a fresh machine by itself.
# `make setup` uses PYTHON when given (`make test PYTHON=python3.11`), else the newest python3.13/3.12/3.11
# that runs here; each Python version gets its own venv, .venv-py3.X, set up from its line's lock file
# (requirements-py3.11.lock: JAX 0.10.2; requirements-py3.12.lock: 3.12 and newer, the newest JAX), and
# .venv links to the last one set up. See docs/dependencies.md.
PICK := $(shell tools/pick_python.sh $(PYTHON))
PY_EXE := $(word 1,$(PICK))
PY_VERSION := $(word 2,$(PICK))
LOCK := $(word 3,$(PICK))
VENV := .venv-py$(PY_VERSION)
PY := $(VENV)/bin/python

.PHONY: setup test test-fast lock demo sweep bench-sweep prepare-data bench-data clean study report device-check

setup: $(VENV)/.installed
	@echo "make setup: Python $(PY_VERSION) ($(PY_EXE)), $(LOCK), $(VENV)"
	@if [ -L .venv ] || [ ! -e .venv ]; then ln -sfn $(VENV) .venv; \
	else echo "make setup: .venv is a directory from an earlier setup; this one uses $(VENV) (make clean removes both)"; fi

$(VENV)/.installed: pyproject.toml $(LOCK)
	@test -n "$(PY_EXE)" || { echo "error: no Python to set up with (see above)"; exit 2; }
	$(PY_EXE) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[test]'
	touch $@

# Regenerates both lock files from pyproject.toml with uv (pinned, in a throwaway venv); pins already in
# a lock file are kept unless pyproject.toml needs others (UPGRADE=1 takes the newest of everything).
LOCK_TOOL := .cache/lock-venv/bin/python
lock:
	test -x $(LOCK_TOOL) || { python3 -m venv .cache/lock-venv && $(LOCK_TOOL) -m pip install --quiet uv==0.13.9; }
	for v in 3.11 3.12; do $(LOCK_TOOL) -m uv pip compile pyproject.toml --extra test --python-version $$v \
	  $(if $(UPGRADE),--upgrade) --custom-compile-command "make lock" --quiet -o requirements-py$$v.lock || exit 1; done

test: setup
	$(PY) -m pytest -q

# The tests not marked slow: `slow` marks every test that starts a process or trains a model for more than
# a few steps (pyproject.toml's [tool.pytest.ini_options]). `make test` runs all, one test at a time; these
# run on every core (pytest-xdist), since most of their time is single-threaded XLA compilation.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" -n auto

# ruff with the rules and line length of pyproject.toml ([tool.ruff]), then the type checker.
.PHONY: lint typecheck
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

# mypy on mann_jax/ with the settings of pyproject.toml ([tool.mypy]).
typecheck: setup
	$(PY) -m mypy

prepare-data: setup
	$(PY) -m experiments.prepare_data

bench-data: setup
	$(PY) -m experiments.bench_data

clean:
	rm -rf .venv .venv-py3.* .pytest_cache .mypy_cache

demo: setup
	$(PY) -m experiments.prepare_data --config configs/default.py:runlocal
	$(PY) -m experiments.train --config configs/default.py:runlocal --workdir runs/demo

# The main job: one MANN per sparsity level (0-90 %) on the embedded data, CPU, a few minutes.
sweep: setup
	$(PY) -m experiments.sweep --config configs/sweep.py:runlocal --workdir runs/sweep

bench-sweep: setup
	$(PY) -m experiments.bench_sweep

# The study's experiments (mann_jax/study/registry.py) on the real dog data at runlocal scale (2-core CPU;
# each < 30 min), then the report.
STUDY_CONFIG ?= configs/study.py:runlocal
STUDY_DIR ?= runs/study
study: setup
	$(PY) -m experiments.study --config $(STUDY_CONFIG) --workdir $(STUDY_DIR)

# Gather whatever experiments have run in $(STUDY_DIR) into $(STUDY_DIR)/report.md.
report: setup
	$(PY) -m experiments.report --workdir $(STUDY_DIR)

# GPU check (docs/multihost.md): needs the pinned JAX's CUDA plugin in .venv
# (.venv/bin/pip install -c requirements.lock -e '.[cuda12]'); < 8 min, one JSON summary.
# Without a GPU it says so and exits 0.
device-check: setup
	$(PY) -m experiments.device_check --out runs/device_check.json
