"""Sparsity against motion quality (study Fig. 1), unstructured and structured pruning on one curve.

  python -m experiments.tradeoff --config configs/study.py:runlocal --workdir runs/study   # dog data, 2-core CPU
  python -m experiments.tradeoff --config configs/study.py --workdir runs/study_full       # the study's scale (GPU)

Trains (or reuses) the sweeps in <workdir>/models/{unstructured,structured}, rolls every model out
walking and turning, replays held-out clips, and writes <workdir>/tradeoff/: results.json,
skating_vs_sparsity.{png,svg}, quality_vs_sparsity.{png,svg}, tensorboard/.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from mann_jax.cli import clear_errors
from mann_jax.study import tradeoff
from mann_jax.study.results import print_summary

_CONFIG = config_flags.DEFINE_config_file("config", "configs/study.py:runlocal", "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (models/, tradeoff/).", required=True)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    res = tradeoff.run(_CONFIG.value, _WORKDIR.value)
    print_summary(res)
    print(f"wrote {_WORKDIR.value}/tradeoff/ in {res['seconds']:.0f} s")
    summary = res["data"]["summary"]
    print(json.dumps({"experiment": "tradeoff", "seconds": res["seconds"],
                      "walk_skating": {k: v["mean"] for k, v in summary["walk_skating_cm_per_frame"].items()},
                      "val_loss": {k: v["mean"] for k, v in summary["val_loss"].items()},
                      "verdicts": [f["verdict"] for f in res["findings"]]}))


if __name__ == "__main__":
    app.run(clear_errors(main, also=(ValueError,)))  # ValueError: settings the study cannot use
