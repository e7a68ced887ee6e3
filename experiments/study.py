"""Every study experiment of the registry (mann_jax.study.registry), one after another, then the report.

  python -m experiments.study --config configs/study.py:runlocal --workdir runs/study       # make study
  python -m experiments.study --config configs/study.py:toy --workdir /tmp/study_toy          # minutes
  python -m experiments.study --only=tradeoff,ablation --workdir runs/study                   # some of them

Each experiment prints its tables, findings and a JSON line, and writes <workdir>/<experiment>/;
models are trained once under <workdir>/models/ and shared. Then <workdir>/report.md is written
(--no_report to skip) and the verdict on each of the study's conclusions printed.
"""

from absl import flags

from mann_jax.study.command import run_study

_ONLY = flags.DEFINE_list("only", None, "Run only these registered experiments (comma separated); default all.")
_NO_REPORT = flags.DEFINE_bool("no_report", False, "Do not write the report at the end.")

if __name__ == "__main__":
    run_study(_ONLY, _NO_REPORT)
