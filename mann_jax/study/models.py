"""The trained models of the study: sweeps under ``<workdir>/models/<name>``, trained once, then reused.

Every experiment asks for its models by name and settings (:func:`trained_models`). The first
call trains them as one sweep (:func:`mann_jax.sweep.run_sweep`: one model per level and seed,
same data order); later calls resume the same sweep from its checkpoints, which returns at once
when it is finished. The sweep's config is the study config without its ``study`` section (which
holds evaluation settings only), with the experiment's overrides; a changed training setting in
an existing folder is refused by the sweep's checkpoint check (use another ``--workdir``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mann_jax import sweep
from mann_jax.config_errors import ConfigError
from mann_jax.pruning import find_pruning_state
from mann_jax.train import ModelFunctions, build_model


def sweep_config(config: ml_collections.ConfigDict, *, levels: Sequence[float],
                 overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
    """A sweep config from a study config: its levels, the study's seeds, ``{"a.b": value}`` overrides.

    Raises:
      KeyError: an override names a field that does not exist (a typo).
    """
    d = config.to_dict()
    study = d.pop("study")
    derived = ml_collections.ConfigDict(d)
    derived.sweep.levels = tuple(float(v) for v in levels)
    derived.sweep.seeds = tuple(int(s) for s in study["seeds"])
    derived.pruning.target_sparsity = 0.0
    # By hand, not ConfigDict.update_from_flattened_dict: that one silently adds a misspelt key.
    for key, value in (overrides or {}).items():
        node = derived
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"override {key!r}: no such config field")
        node[leaf] = value
    return derived


@dataclasses.dataclass(frozen=True)
class TrainedModels:
    """A finished sweep's models (host-side) and its table.

    Attributes:
      name: folder name under ``<workdir>/models``.
      config: the sweep config they were trained with.
      fns: the model functions of that config.
      params: stacked parameters, leading model axis (level-major, then seed).
      levels, seeds: per model; ``names``: per model.
      rows: the sweep's results table (:data:`mann_jax.sweep.TABLE_COLUMNS` per model).
      masks: stacked pruning masks (same structure as the pruned leaves of ``params``).
    """

    name: str
    config: ml_collections.ConfigDict
    fns: ModelFunctions
    params: Any
    levels: tuple[float, ...]
    seeds: tuple[int, ...]
    names: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    masks: Any

    def indices(self, level: float) -> list[int]:
        """Models of ``level`` (one per seed, in seed order)."""
        found = [i for i, v in enumerate(self.levels) if abs(v - level) < 1e-9]
        if not found:
            raise ConfigError(f"models {self.name!r} have no level {level}; levels: {sorted(set(self.levels))}")
        return found

    def select(self, indices: Sequence[int]) -> Any:
        """The stacked parameters of the models ``indices``."""
        idx = np.asarray(indices)
        return jax.tree.map(lambda a: np.asarray(a)[idx], self.params)


def trained_models(config: ml_collections.ConfigDict, workdir: str | Path, name: str, *, levels: Sequence[float],
                   overrides: Mapping[str, Any] | None = None, dataset: Any = None,
                   progress: bool = True) -> TrainedModels:
    """The models ``name`` (one per level and seed), trained now unless ``<workdir>/models/<name>`` has them."""
    cfg = sweep_config(config, levels=levels, overrides=overrides)
    result = sweep.run_sweep(cfg, Path(workdir) / "models" / name, dataset=dataset, progress=progress)
    params = jax.tree.map(np.asarray, result.state.params)
    masks = jax.tree.map(np.asarray, find_pruning_state(result.state.opt_state).masks)
    fns = ModelFunctions.of(build_model(cfg.model, seed=int(result.plan.model_seeds[0])))
    return TrainedModels(name=name, config=cfg, fns=fns, params=params, levels=result.plan.model_levels,
                         seeds=result.plan.model_seeds, names=result.plan.names, rows=tuple(result.rows),
                         masks=masks)


#: Name of the trade-off sweep (``config.study.levels`` x seeds, unstructured): its dense and
#: ``config.study.sparse_level`` models are the ones the ablation and activation studies examine.
TRADEOFF = "unstructured"


def tradeoff_models(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
                    progress: bool = True) -> TrainedModels:
    """The trade-off sweep's models (trained on first use; shared by tradeoff, ablation and activations)."""
    return trained_models(config, workdir, TRADEOFF, levels=config.study.levels, dataset=dataset, progress=progress)
