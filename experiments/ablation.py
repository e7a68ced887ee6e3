"""Expert ablation, dense vs sparse (the study's Table 2): switch each expert off in turn and measure.

  python -m experiments.ablation --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.ablation --config configs/study.py:toy --workdir /tmp/study_toy     # seconds

Uses (and trains on first use) the trade-off sweep's dense and ``config.study.sparse_level`` models
in ``<workdir>/models/``; writes ``<workdir>/ablation/`` (results.json, heat-maps as PNG + SVG,
TensorBoard). Prints the impact table and the findings; the last line is a JSON summary.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from mann_jax.cli import clear_errors
from mann_jax.study import ablation
from mann_jax.study.results import print_summary

_CONFIG = config_flags.DEFINE_config_file("config", "configs/study.py:runlocal", "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (models/ and one folder per experiment).",
                               required=True)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    res = ablation.run(_CONFIG.value, _WORKDIR.value, progress=True)
    print_summary(res)
    corr = res["data"]["correlation"]
    print(json.dumps({"experiment": res["experiment"], "out_dir": f"{_WORKDIR.value}/{ablation.EXPERIMENT}",
                      "seconds": res["seconds"],
                      "spearman_rho_mean": {k: v["mean"] for k, v in corr.items()},
                      "broken_actions_jaccard_mean": res["data"]["broken_actions_jaccard"]["mean"],
                      "verdicts": [f["verdict"] for f in res["findings"]]}))


if __name__ == "__main__":
    app.run(clear_errors(main, also=(ValueError,)))  # ValueError: settings the study cannot use
