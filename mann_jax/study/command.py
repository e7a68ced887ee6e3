"""The command line every study experiment shares (``experiments/{tradeoff,same_size,ablation,...}.py``).

``--config`` (default ``configs/study.py:runlocal``) and ``--workdir``; the command runs the
experiment, prints its tables and findings, where it wrote them, and as the LAST line a JSON
summary: ``experiment``, ``out_dir``, ``seconds`` and the experiment's own headline figures. Bad
input and settings the study cannot use (the project's user errors, e.g.
:class:`~mann_jax.config_errors.ConfigError`) end it with one ``error:`` line, status 2; any other
exception is a bug and keeps its traceback.

The flags are defined here, imported only by the study's entry points (the other commands define
their own ``--config``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from absl import flags, logging
from ml_collections import config_flags

from mann_jax import cli
from mann_jax.config_errors import check
from mann_jax.study.results import print_summary

_CONFIG = config_flags.DEFINE_config_file("config", "configs/study.py:runlocal", "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (models/ and one folder per experiment).",
                               required=True)

Results = Mapping[str, Any]


def run_experiment(run: Callable[[Any, str], Results], headline: Callable[[Results], dict[str, Any]]) -> None:
    """Run the command: ``run(config, workdir)`` returns the results.json payload, ``headline`` its JSON figures."""

    def main(argv: list[str]) -> None:
        del argv
        logging.set_verbosity(logging.WARNING)
        study = _CONFIG.value.study  # settings every experiment reads, checked before any model trains
        check(study.eval_split in ("val", "test"), "study.eval_split", study.eval_split, "'val' or 'test'")
        for key in ("levels", "structured_levels"):
            levels = study.get(key, ())
            check(all(isinstance(v, (int, float)) and 0 <= v < 1 for v in levels), f"study.{key}", levels,
                  "sparsity levels in [0, 1)")
        res = run(_CONFIG.value, _WORKDIR.value)
        print_summary(res)
        out_dir = Path(_WORKDIR.value) / res["experiment"]
        print(f"wrote {out_dir}/ ({', '.join(res['figures'])}) in {res['seconds']:.1f} s")
        print(json.dumps({"experiment": res["experiment"], "out_dir": str(out_dir), "seconds": res["seconds"],
                          **headline(res), "verdicts": [f["verdict"] for f in res["findings"]]}))

    cli.run(main)
