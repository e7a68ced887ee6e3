"""Pruning schedules at one sparsity on the same budget: one-cycle vs AGP vs one-shot (beyond the study).

  python -m experiments.schedules --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.schedules --config configs/study.py:toy --workdir /tmp/ss_toy      # seconds

One sweep per schedule in config.study.schedules at config.study.schedule_level (one-shot: dense
until config.study.one_shot_at of the budget, pruned once, fine-tuned for the rest), evaluated
over config.study.seeds (mann_jax.study.schedules); writes <workdir>/schedules/ (results.json,
figures PNG + SVG, TensorBoard). Prints the table and the findings; the last line is a JSON summary.
"""

from __future__ import annotations

from typing import Any

from mann_jax.study import schedules
from mann_jax.study.command import Results, run_experiment


def headline(res: Results) -> dict[str, Any]:
    per = res["data"]["schedules"]
    return {"level": res["data"]["level"], "all_reach_target": res["data"]["all_reach_target"],
            "val_loss": {n: v["metrics"]["val_loss"]["mean"] for n, v in per.items()},
            "test_loss": {n: v["metrics"]["test_loss"]["mean"] for n, v in per.items()}}


if __name__ == "__main__":
    run_experiment(schedules.run, headline)
