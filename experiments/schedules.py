"""Pruning schedules at one sparsity on the same budget: one-cycle vs AGP vs one-shot (beyond the study).

  python -m experiments.schedules --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.schedules --config configs/study.py:toy --workdir /tmp/ss_toy      # seconds

One sweep per schedule in config.study.schedules at config.study.schedule_level (one-shot: dense
until config.study.one_shot_at of the budget, pruned once, fine-tuned for the rest), evaluated
over config.study.seeds (mann_jax.study.schedules); writes <workdir>/schedules/ (results.json,
figures PNG + SVG, TensorBoard). Prints the table and the findings; the last line is a JSON summary.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from mann_jax.cli import clear_errors
from mann_jax.study import schedules
from mann_jax.study.results import print_summary

_CONFIG = config_flags.DEFINE_config_file("config", "configs/study.py:runlocal", "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (models/ and schedules/ inside).", required=True)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    res = schedules.run(_CONFIG.value, _WORKDIR.value)
    print_summary(res)
    print(f"wrote {_WORKDIR.value}/schedules/ ({', '.join(res['figures'])}) in {res['seconds']:.1f} s")
    per = res["data"]["schedules"]
    print(json.dumps({
        "experiment": "schedules", "seconds": res["seconds"], "level": res["data"]["level"],
        "all_reach_target": res["data"]["all_reach_target"],
        "val_loss": {n: v["metrics"]["val_loss"]["mean"] for n, v in per.items()},
        "test_loss": {n: v["metrics"]["test_loss"]["mean"] for n, v in per.items()},
        "verdicts": [f["verdict"] for f in res["findings"]]}))


if __name__ == "__main__":
    app.run(clear_errors(main, also=(ValueError,)))  # ValueError: settings the study cannot use
