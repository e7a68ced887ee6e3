"""The trained models of the study: sweeps under ``<workdir>/models/<name>``, trained once, then reused.

Every experiment asks for its models by name and settings (:func:`trained_models`). The first
call trains them as one sweep (:func:`mann_jax.sweep.run_sweep`: one model per level and seed,
same data order); later calls resume the same sweep from its checkpoints, which returns at once
when it is finished. The sweep's config is the study config without its ``study`` section (which
holds evaluation settings only), with the experiment's overrides; a changed training setting in
an existing folder is refused by the sweep's checkpoint check (use another ``--workdir``).

When the study starts from a trained network (``train.init_from``, the authors' AI4Animation
folder in ``configs/study.py:pretrained``), :func:`reference_models` gives that network untouched
as a one-model :class:`TrainedModels`, so that it is measured exactly like the sweeps' models
(the study's dense reference); nothing is trained for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mann_jax import sweep
from mann_jax.config_errors import ConfigError
from mann_jax.pruning import find_pruning_state
from mann_jax.train import ModelFunctions, build_model, initial_model, make_eval_loss


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
      steps: the steps the sweep trained (its whole budget: studies never stop a sweep early; 0: not trained).
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
    steps: int

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
                         masks=masks, steps=int(result.steps))


#: Name of the trade-off sweep (``config.study.levels`` x seeds, unstructured): its dense and
#: ``config.study.sparse_level`` models are the ones the ablation and activation studies examine.
TRADEOFF = "unstructured"


def tradeoff_models(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
                    progress: bool = True) -> TrainedModels:
    """The trade-off sweep's models (trained on first use; shared by tradeoff, ablation and activations)."""
    return trained_models(config, workdir, TRADEOFF, levels=config.study.levels, dataset=dataset, progress=progress)


#: Name and label of the study's dense reference: the network ``train.init_from`` names, as trained by its authors.
REFERENCE = "authors"
REFERENCE_LABEL = "authors' network (not fine-tuned)"


def weights_digest(folder: str | Path) -> str:
    """SHA-256 over the names and bytes of a weights folder's ``.bin`` files (which network was measured)."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.bin")):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def reference_models(config: ml_collections.ConfigDict, like: TrainedModels, *, dataset: Any, eval_chunk: int = 4096
                     ) -> TrainedModels | None:
    """The network of ``config.train.init_from`` untouched, as one dense model shaped like ``like``'s.

    Its table row (:data:`mann_jax.sweep.TABLE_COLUMNS`) holds the counts of the dense network, its
    validation loss on ``dataset`` (in the dataset's normalisation, as the sweeps measure theirs) and
    no training loss (NaN: it was not trained here). None when the study does not start from a network.

    Raises:
      ConfigError: the folder's network does not have the sizes of ``like``'s config.
      WeightsFormatError: a file of the folder is missing or has the wrong size.
    """
    folder = config.train.get("init_from", "")
    if not folder:
        return None
    fns = initial_model(like.config, seed=int(like.seeds[0]))  # checks the sizes against the sweep's model
    params = jax.tree.map(np.asarray, fns.params)
    masks = jax.tree.map(lambda m: np.ones_like(np.asarray(m)[0]), like.masks)  # nothing pruned
    x_val, y_val = dataset.arrays("val")
    val_loss = make_eval_loss(like.fns, chunk=eval_chunk)(params, x_val, y_val) if len(x_val) else float("nan")
    row = sweep.table_row(REFERENCE, 0.0, 0, params, masks, float("nan"), val_loss)
    return TrainedModels(name=REFERENCE, config=like.config, fns=like.fns,
                         params=jax.tree.map(lambda a: a[None], params), levels=(0.0,), seeds=(0,),
                         names=(REFERENCE,), rows=(row,), masks=jax.tree.map(lambda m: m[None], masks), steps=0)


def check_levels(config: ml_collections.ConfigDict) -> float:
    """The sparse level, checked to be a trained level other than the dense one (0).

    Raises:
      ConfigError: 0 or ``sparse_level`` not among ``config.study.levels``, or ``sparse_level`` is 0.
    """
    levels = [float(v) for v in config.study.levels]
    sparse = float(config.study.sparse_level)
    if not any(abs(v) < 1e-9 for v in levels):
        raise ConfigError(f"config.study.levels {tuple(levels)} has no dense level 0.0 to compare with")
    if not any(abs(v - sparse) < 1e-9 for v in levels):
        raise ConfigError(f"config.study.sparse_level {sparse} is not among the trained levels "
                         f"config.study.levels {tuple(levels)}")
    if abs(sparse) < 1e-9:
        raise ConfigError("config.study.sparse_level is 0 (the dense model): nothing to compare")
    return sparse


@dataclasses.dataclass(frozen=True)
class DenseSparse:
    """The trade-off sweep's dense models (level 0) and its ``config.study.sparse_level`` models, paired by
    seed: the sparse model of seed s was trained from the same initialisation and data order as the dense
    one, so expert k is the same expert in both (the ablation and activation experiments compare them).

    Attributes:
      models: the trade-off sweep's models.
      dense, sparse: indices in ``models`` of the dense and of the sparse model of each seed, in seed order.
      dataset: the dataset they were trained on.
    """

    models: TrainedModels
    dense: list[int]
    sparse: list[int]
    dataset: Any

    @property
    def seeds(self) -> list[int]:
        """The seeds, in the order of the pairs."""
        return [int(self.models.seeds[i]) for i in self.dense]

    @property
    def groups(self) -> dict[str, slice]:
        """Where each kind lies along the model axis of :meth:`params`: ``{"dense": ..., "sparse": ...}``."""
        n = len(self.dense)
        return {"dense": slice(0, n), "sparse": slice(n, 2 * n)}

    def params(self) -> Any:
        """The stacked parameters of the dense models, then of the sparse ones (seed order in each)."""
        return self.models.select(self.dense + self.sparse)

    def names(self, kind: str) -> list[str]:
        """The model names of ``kind`` (``"dense"`` or ``"sparse"``), in seed order."""
        return [self.models.names[i] for i in (self.dense if kind == "dense" else self.sparse)]


def dense_and_sparse(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
                     progress: bool = True) -> DenseSparse:
    """The trade-off models (trained on first use), their dense and sparse models paired by seed, and the dataset.

    Raises:
      ConfigError: see :func:`check_levels` (before any data is read or model trained).
      ValueError: the dense and sparse seeds do not pair up.
    """
    check_levels(config)
    if dataset is None:
        from mann_jax.data.dataset import build_dataset

        dataset = build_dataset(config.data, progress=progress)
    models = tradeoff_models(config, workdir, dataset=dataset, progress=progress)
    dense, sparse = models.indices(0.0), models.indices(float(config.study.sparse_level))
    ds, ss = [models.seeds[i] for i in dense], [models.seeds[i] for i in sparse]
    if ds != ss:
        raise ValueError(f"dense seeds {ds} and sparse seeds {ss} do not pair up")
    return DenseSparse(models=models, dense=dense, sparse=sparse, dataset=dataset)
