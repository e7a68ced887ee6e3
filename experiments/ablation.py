"""Expert ablation, dense vs sparse (the study's Table 2): switch each expert off in turn and measure.

  python -m experiments.ablation --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.ablation --config configs/study.py:toy --workdir /tmp/study_toy     # seconds

Uses (and trains on first use) the trade-off sweep's dense and ``config.study.sparse_level`` models
in ``<workdir>/models/``; writes ``<workdir>/ablation/`` (results.json, heat-maps as PNG + SVG,
TensorBoard). Prints the impact table and the findings; the last line is a JSON summary.
"""

from mann_jax.study.command import run_experiment

if __name__ == "__main__":
    run_experiment("ablation")
