# Every target depends on `setup`, so each works on a fresh machine by itself.
PY := .venv/bin/python

.PHONY: setup test demo sweep bench-sweep prepare-data bench-data clean study report device-check

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

demo: setup
	$(PY) -m experiments.prepare_data --config configs/default.py:runlocal
	$(PY) -m experiments.train --config configs/default.py:runlocal --workdir runs/demo

# The main job: one MANN per sparsity level (0-90 %) on the embedded data, CPU, a few minutes.
sweep: setup
	$(PY) -m experiments.sweep --config configs/sweep.py:runlocal --workdir runs/sweep

bench-sweep: setup
	$(PY) -m experiments.bench_sweep

# The study's experiments on the real dog data at runlocal scale (2-core CPU; each < 30 min), then the report.
STUDY_CONFIG ?= configs/study.py:runlocal
STUDY_DIR ?= runs/study
study: setup
	$(PY) -m experiments.tradeoff --config $(STUDY_CONFIG) --workdir $(STUDY_DIR)
	$(PY) -m experiments.model_size --workdir $(STUDY_DIR)
	$(PY) -m experiments.same_size --config $(STUDY_CONFIG) --workdir $(STUDY_DIR)
	$(PY) -m experiments.ablation --config $(STUDY_CONFIG) --workdir $(STUDY_DIR)
	$(PY) -m experiments.activations --config $(STUDY_CONFIG) --workdir $(STUDY_DIR)
	$(PY) -m experiments.schedules --config $(STUDY_CONFIG) --workdir $(STUDY_DIR)
	$(PY) -m experiments.report --workdir $(STUDY_DIR)

# Gather whatever experiments have run in $(STUDY_DIR) into $(STUDY_DIR)/report.md.
report: setup
	$(PY) -m experiments.report --workdir $(STUDY_DIR)

# GPU check (docs/multihost.md): needs the pinned JAX's CUDA plugin in .venv
# (.venv/bin/pip install -c requirements.lock -e '.[cuda12]'); < 8 min, one JSON summary.
# Without a GPU it says so and exits 0.
device-check: setup
	$(PY) -m experiments.device_check --out runs/device_check.json
