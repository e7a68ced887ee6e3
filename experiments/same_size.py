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

import json

from absl import app, flags, logging
from ml_collections import config_flags

from mann_jax.cli import clear_errors
from mann_jax.study import same_size
from mann_jax.study.results import print_summary

_CONFIG = config_flags.DEFINE_config_file("config", "configs/study.py:runlocal", "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (models/ and same_size/ inside).", required=True)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    res = same_size.run(_CONFIG.value, _WORKDIR.value)
    print_summary(res)
    pairs = res["data"]["pairs"]
    print(f"wrote {_WORKDIR.value}/same_size/ ({', '.join(res['figures'] + res['data']['videos'])}) "
          f"in {res['seconds']:.1f} s")
    print(json.dumps({
        "experiment": "same_size", "seconds": res["seconds"], "counts_equal": res["data"]["counts_equal"],
        "pairs": [{"hidden": p["match"]["hidden"], "level": p["match"]["level"], "nonzero": p["match"]["dense_params"],
                   "walk_skating": {w: p[w]["metrics"]["walk_skating_cm_per_frame"]["mean"]
                                    for w in ("dense", "pruned")},
                   "val_loss": {w: p[w]["metrics"]["val_loss"]["mean"] for w in ("dense", "pruned")}} for p in pairs],
        "verdicts": [f["verdict"] for f in res["findings"]]}))


if __name__ == "__main__":
    app.run(clear_errors(main, also=(ValueError,)))  # ValueError: settings the study cannot use
