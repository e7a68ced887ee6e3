"""The command line of the study: ``experiments.study`` (every registered experiment, then the report)
and each experiment's own entry point (``experiments/{tradeoff,same_size,ablation,...}.py``).

Both read :data:`mann_jax.study.registry.EXPERIMENTS`. ``--config`` (default
``configs/study.py:runlocal``) and ``--workdir``; each experiment run prints its tables and
findings, where it wrote them, and as the LAST line a JSON summary: ``experiment``, ``out_dir``,
``seconds`` and the experiment's own headline figures. Bad input and settings the study cannot
use (the project's user errors, e.g. :class:`~mann_jax.config_errors.ConfigError`) end it with one
``error:`` line, status 2; any other exception is a bug and keeps its traceback.

``--config`` and ``--workdir`` are defined here, imported only by the study's commands (the other
commands define their own ``--config``); ``experiments.study`` adds ``--only`` and ``--no_report``.
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

from mann_jax import cli, workdir_lock
from mann_jax.config_errors import ConfigError, check
from mann_jax.study import registry
from mann_jax.study.results import print_summary

_CONFIG = config_flags.DEFINE_config_file("config", "configs/study.py:runlocal", "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study directory (models/ and one folder per experiment).",
                               required=True)

Results = registry.Results


def config_argument() -> str:
    """``--config`` as given (``"configs/study.py:pretrained"``), for the commands the report prints."""
    return str(config_flags.get_config_filename(flags.FLAGS["config"]))


def check_study_settings(config: ml_collections.ConfigDict) -> None:
    """The ``study`` settings every experiment reads, checked before any model trains.

    Raises:
      ConfigError: the first value out of range, named by its key.
    """
    study = config.study
    check(study.eval_split in ("val", "test"), "study.eval_split", study.eval_split, "'val' or 'test'")
    for key in ("levels", "structured_levels"):
        levels = study.get(key, ())
        check(all(isinstance(v, (int, float)) and 0 <= v < 1 for v in levels), f"study.{key}", levels,
              "sparsity levels in [0, 1)")


def run_one(name: str, config: ml_collections.ConfigDict, workdir: str) -> Results:
    """Run registered experiment ``name``; print its tables, findings, where it wrote and a JSON last line."""
    exp = registry.EXPERIMENTS[name]
    res = exp.run(config, workdir)
    print_summary(res)
    out_dir = Path(workdir) / res["experiment"]
    print(f"wrote {out_dir}/ ({', '.join(res['figures'])}) in {res['seconds']:.1f} s")
    print(json.dumps({"experiment": res["experiment"], "out_dir": str(out_dir), "seconds": res["seconds"],
                      **exp.headline(res), "verdicts": [f["verdict"] for f in res["findings"]]}))
    return res


def remaining_work(names: list[str], workdir: str) -> str:
    """One line: which of ``names`` already wrote their results into ``workdir`` and which remain (a
    remaining experiment's sweeps resume from their checkpoints)."""
    done = [n for n in names if (Path(workdir) / n / "results.json").is_file()]
    todo = [n for n in names if n not in done]
    return (f"study in {workdir}: {len(done)} of {len(names)} experiments done ({', '.join(done) or 'none'}); "
            f"remaining: {', '.join(todo) or 'none'}")


def selected(only: list[str] | None) -> list[str]:
    """The registered experiments ``only`` names (registry order), or all of them.

    Raises:
      ConfigError: a name that is not registered.
    """
    if not only:
        return list(registry.EXPERIMENTS)
    unknown = [n for n in only if n not in registry.EXPERIMENTS]
    if unknown:
        raise ConfigError(f"--only: unknown experiment(s) {unknown}; registered: {list(registry.EXPERIMENTS)}")
    return [n for n in registry.EXPERIMENTS if n in only]


def run_experiment(name: str) -> None:
    """The command of registered experiment ``name`` (``experiments/<name>.py``)."""

    def main(argv: list[str]) -> None:
        del argv
        logging.set_verbosity(logging.WARNING)
        check_study_settings(_CONFIG.value)
        with workdir_lock.hold(_WORKDIR.value):  # one writer per study folder
            registry.record_config(_WORKDIR.value, config_argument())
            run_one(name, _CONFIG.value, _WORKDIR.value)

    cli.run(main)


def run_study(only: flags.FlagHolder[list[str] | None], no_report: flags.FlagHolder[bool]) -> None:
    """``experiments.study``: every registered experiment (or those ``only`` names), one after another,
    then the report (unless ``no_report``)."""

    def main(argv: list[str]) -> None:
        del argv
        logging.set_verbosity(logging.WARNING)
        names = selected(only.value)
        check_study_settings(_CONFIG.value)
        print(remaining_work(names, _WORKDIR.value))
        with workdir_lock.hold(_WORKDIR.value):  # one writer per study folder
            registry.record_config(_WORKDIR.value, config_argument())
            for name in names:
                run_one(name, _CONFIG.value, _WORKDIR.value)
        if not no_report.value:
            from mann_jax.study import report

            collected = report.collect(_WORKDIR.value)
            path = report.write_report(_WORKDIR.value)
            print(f"report: {path}")
            for key, verdict in collected.verdicts().items():
                print(f"{key}: {verdict.summary()}")

    cli.run(main)
