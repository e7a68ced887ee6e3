"""The study's experiments, in one list: what ``make study``, ``experiments.study``, the per-experiment
commands and the report all read.

An experiment is a module of :mod:`mann_jax.study` with ``run(config, workdir) -> results`` (the
payload :func:`mann_jax.study.results.write_results` wrote to ``<workdir>/<name>/results.json``) and
``headline(results) -> dict`` (the figures its command prints as a JSON last line). Adding one =
that module plus one :class:`StudyExperiment` in :data:`EXPERIMENTS`. Modules are imported only
when an experiment runs, so reading the list (the report) imports no JAX.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

Results = Mapping[str, Any]

#: Where the commands of :data:`EXPERIMENTS` write (the report substitutes the actual workdir).
DEFAULT_WORKDIR = "runs/study"
DEFAULT_CONFIG = "configs/study.py:runlocal"
#: ``{"config": "<file>:<arg>"}``: the config a study folder's commands ran with (the report's commands repeat it).
CONFIG_RECORD = "study_config.json"


class StudyExperiment(NamedTuple):
    """One registered experiment.

    Attributes:
      title: its heading in the report.
      module: the :mod:`mann_jax.study` module exposing ``run`` and ``headline``.
      conclusions: the study conclusions (keys of :data:`mann_jax.study.results.CONCLUSIONS`) its
        findings bear on (the report says what to run when none of them has).
      takes_config: whether it trains with ``--config`` (False: computed, e.g. Table 1).
      entry_point: its own command module under ``experiments/``; None: run through
        ``experiments.study --only=<name>``.
    """

    title: str
    module: str
    conclusions: tuple[str, ...] = ()
    takes_config: bool = True
    entry_point: str | None = None

    def load(self) -> ModuleType:
        """The experiment's module (imported now)."""
        return importlib.import_module(self.module)

    @property
    def run(self) -> Callable[..., Results]:
        """``run(config, workdir) -> results``."""
        return self.load().run

    @property
    def headline(self) -> Callable[[Results], dict[str, Any]]:
        """``headline(results) -> dict`` of the figures the command prints."""
        return self.load().headline


def command(name: str, workdir: str = DEFAULT_WORKDIR, config: str = DEFAULT_CONFIG) -> str:
    """The command that runs experiment ``name`` alone into ``workdir`` with study config ``config``."""
    exp = EXPERIMENTS[name]
    module = exp.entry_point or f"experiments.study --only={name}"
    flag = f" --config {config}" if exp.takes_config else ""
    return f"python -m {module}{flag} --workdir {workdir}"


def recorded_config(workdir: str | Path) -> str:
    """The config recorded in ``workdir`` by its last study command; :data:`DEFAULT_CONFIG` if none or unreadable."""
    try:
        config = json.loads((Path(workdir) / CONFIG_RECORD).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CONFIG
    return config if isinstance(config, str) and config else DEFAULT_CONFIG


def record_config(workdir: str | Path, config: str) -> None:
    """Record ``config`` (``"<file>:<arg>"``) as the config of the study in ``workdir``."""
    path = Path(workdir) / CONFIG_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"config": config}) + "\n")
    tmp.replace(path)


#: The study's experiments, in report order (the key is the folder under the workdir).
EXPERIMENTS: dict[str, StudyExperiment] = {
    "tradeoff": StudyExperiment("Quality against sparsity (study Fig. 1, + structured pruning)",
                                "mann_jax.study.tradeoff", ("sparsity_costs_quality",),
                                entry_point="experiments.tradeoff"),
    "model_size": StudyExperiment("Model size and MFLOPs against sparsity (study Table 1)",
                                  "mann_jax.study.model_size", takes_config=False,
                                  entry_point="experiments.model_size"),
    "same_size": StudyExperiment("Pruned large vs dense small MANN at the same size (study Figs. 2-3)",
                                 "mann_jax.study.same_size", ("pruned_beats_small_dense",),
                                 entry_point="experiments.same_size"),
    "ablation": StudyExperiment("Switching experts off, dense vs sparse (study Table 2)",
                                "mann_jax.study.ablation_experiment", ("experts_keep_roles",),
                                entry_point="experiments.ablation"),
    "activations": StudyExperiment("Gating activation profiles, dense vs sparse (study Fig. 4)",
                                   "mann_jax.study.activations", ("experts_keep_roles",),
                                   entry_point="experiments.activations"),
    "schedules": StudyExperiment("Pruning schedules: one-cycle, AGP, one-shot",
                                 "mann_jax.study.schedules_experiment", entry_point="experiments.schedules"),
}


def conclusion_sources() -> dict[str, tuple[str, ...]]:
    """Conclusion -> the experiments whose findings bear on it (from :data:`EXPERIMENTS`)."""
    out: dict[str, list[str]] = {}
    for name, exp in EXPERIMENTS.items():
        for c in exp.conclusions:
            out.setdefault(c, []).append(name)
    return {c: tuple(names) for c, names in out.items()}
