"""Sparsity against motion quality (study Fig. 1), unstructured and structured pruning on one curve.

  python -m experiments.tradeoff --config configs/study.py:runlocal --workdir runs/study   # dog data, 2-core CPU
  python -m experiments.tradeoff --config configs/study.py --workdir runs/study_full       # the study's scale (GPU)

Trains (or reuses) the sweeps in <workdir>/models/{unstructured,structured}, rolls every model out
walking and turning, replays held-out clips, and writes <workdir>/tradeoff/: results.json,
skating_vs_sparsity.{png,svg}, quality_vs_sparsity.{png,svg}, tensorboard/.
"""

from __future__ import annotations

from typing import Any

from mann_jax.study import tradeoff
from mann_jax.study.command import Results, run_experiment


def headline(res: Results) -> dict[str, Any]:
    summary = res["data"]["summary"]
    return {"walk_skating": {k: v["mean"] for k, v in summary["walk_skating_cm_per_frame"].items()},
            "val_loss": {k: v["mean"] for k, v in summary["val_loss"].items()}}


if __name__ == "__main__":
    run_experiment(tradeoff.run, headline)
