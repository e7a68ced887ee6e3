"""Expert activations, dense vs sparse (the study's Fig. 4): gating over time, profiles, entropy.

  python -m experiments.activations --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.activations --config configs/study.py:toy --workdir /tmp/study_toy     # seconds

Uses (and trains on first use) the trade-off sweep's dense and ``config.study.sparse_level`` models
in ``<workdir>/models/``; writes ``<workdir>/activations/`` (results.json, figures as PNG + SVG,
TensorBoard with the gating over time). Prints the per-action table and the findings; the last
line is a JSON summary.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from mann_jax.cli import clear_errors
from mann_jax.study import activations
from mann_jax.study.results import print_summary

_CONFIG = config_flags.DEFINE_config_file("config", "configs/study.py:runlocal", "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (models/ and one folder per experiment).",
                               required=True)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    res = activations.run(_CONFIG.value, _WORKDIR.value, progress=True)
    print_summary(res)
    per_seed = res["data"]["per_seed"]
    print(json.dumps({"experiment": res["experiment"], "out_dir": f"{_WORKDIR.value}/{activations.EXPERIMENT}",
                      "seconds": res["seconds"],
                      "cosine_mean": per_seed["cosine_mean_over_actions"]["mean"],
                      "entropy_dense_mean": per_seed["entropy_dense_mean_over_actions"]["mean"],
                      "entropy_sparse_mean": per_seed["entropy_sparse_mean_over_actions"]["mean"],
                      "verdicts": [f["verdict"] for f in res["findings"]]}))


if __name__ == "__main__":
    app.run(clear_errors(main, also=(ValueError,)))  # ValueError: settings the study cannot use
