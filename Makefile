# Every target depends on `setup`, so each works on a fresh machine by itself.
PY := .venv/bin/python
WORKDIR ?= workdirs

.PHONY: setup test prepare-data train bench-data clean

setup: .venv/.installed

.venv/.installed: pyproject.toml requirements.lock
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest -q

prepare-data: setup
	$(PY) -m experiments.prepare_data

bench-data: setup
	$(PY) -m experiments.bench_data

clean:
	rm -rf .venv .pytest_cache
