"""Expert ablation, dense vs sparse (the study's Table 2): switch each expert off in turn and measure.

  python -m experiments.ablation --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.ablation --config configs/study.py:toy --workdir /tmp/study_toy     # seconds

Uses (and trains on first use) the trade-off sweep's dense and ``config.study.sparse_level`` models
in ``<workdir>/models/``; writes ``<workdir>/ablation/`` (results.json, heat-maps as PNG + SVG,
TensorBoard). Prints the impact table and the findings; the last line is a JSON summary.
"""

from __future__ import annotations

from typing import Any

from mann_jax.study import ablation
from mann_jax.study.command import Results, run_experiment


def headline(res: Results) -> dict[str, Any]:
    return {"spearman_rho_mean": {k: v["mean"] for k, v in res["data"]["correlation"].items()},
            "broken_actions_jaccard_mean": res["data"]["broken_actions_jaccard"]["mean"]}


if __name__ == "__main__":
    run_experiment(ablation.run, headline)
