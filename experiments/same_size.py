"""Same-size comparison (study Figs. 2-3): dense smaller MANNs vs the base MANN pruned to as many non-zeros.

  python -m experiments.same_size --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.same_size --config configs/study.py:toy --workdir /tmp/ss_toy      # seconds

Trains (or reuses) the dense models of hidden H·f for f in config.study.same_size_fractions and
the base model pruned to exactly their parameter counts (mann_jax.study.same_size), evaluates
walking skating, frozen-while-turning, validation/test loss and held-out replay error over
config.study.seeds, and writes <workdir>/same_size/ (results.json, figures PNG + SVG, TensorBoard,
and side-by-side turning videos when config.study.video). Prints the table and the findings; the
last line is a JSON summary.
"""

from __future__ import annotations

from typing import Any

from mann_jax.study import same_size
from mann_jax.study.command import Results, run_experiment


def headline(res: Results) -> dict[str, Any]:
    return {"videos": res["data"]["videos"], "counts_equal": res["data"]["counts_equal"],
            "pairs": [{"hidden": p["match"]["hidden"], "level": p["match"]["level"],
                       "nonzero": p["match"]["dense_params"],
                       "walk_skating": {w: p[w]["metrics"]["walk_skating_cm_per_frame"]["mean"]
                                        for w in ("dense", "pruned")},
                       "val_loss": {w: p[w]["metrics"]["val_loss"]["mean"] for w in ("dense", "pruned")}}
                      for p in res["data"]["pairs"]]}


if __name__ == "__main__":
    run_experiment(same_size.run, headline)
