"""Measuring trained models for the study: the same metrics for every experiment that compares models.

:func:`evaluate_models` takes some models of a sweep (:class:`mann_jax.study.models.TrainedModels`)
and measures each of them: foot skating and the "frozen while turning" fraction in scripted
scenarios (:func:`mann_jax.evaluate.controller.run_scenarios`; all models and scenarios in one
vmapped rollout), validation and held-out test loss (MSE on normalised outputs), the posture
error of held-out clips replayed window by window (:func:`replay_window_set`), and the actual
sparsity and parameter counts from the trained masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from mann_jax.config_errors import ConfigError
from mann_jax.evaluate.controller import ReplayWindows, held_out_windows, replay_windows, run_scenarios, study_scenarios
from mann_jax.study import stats
from mann_jax.study.models import TrainedModels
from mann_jax.train import make_eval_loss

#: Scenarios rolled out per model by default.
SCENARIOS: tuple[str, ...] = ("walk", "turn90", "turn180")
#: Scenarios whose "frozen while turning" fraction is measured.
TURNS: tuple[str, ...] = ("turn90", "turn180")
#: Rows per chunk of the validation / test loss.
EVAL_CHUNK = 4096

#: Per-model metrics of :func:`evaluate_models` (name -> description, for tables and JSON).
METRICS: dict[str, str] = {
    "walk_skating_cm_per_frame": "foot skating while walking (cm/frame)",
    "turn90_skating_cm_per_frame": "foot skating, 90 degree turn (cm/frame)",
    "turn180_skating_cm_per_frame": "foot skating, 180 degree turn (cm/frame)",
    "walk_skating_support_cm_per_frame": "foot skating while walking, paw heights above the rollout's own support "
                                         "(lowest paw over 2 s) instead of y = 0 (cm/frame)",
    "walk_lowest_paw_m": "median height of the lowest paw while walking (m; the mocap's planted paws: 0-2 cm)",
    "walk_speed_m_per_s": "mean root speed while walking, after the first second (m/s; commanded: study.walk_speed)",
    "turn90_frozen_fraction": "frozen-while-turning fraction, 90 degree turn",
    "turn180_frozen_fraction": "frozen-while-turning fraction, 180 degree turn",
    "frozen_fraction": "frozen-while-turning fraction, mean of the two turns",
    "val_loss": "validation MSE (normalised outputs)",
    "test_loss": "test MSE (held-out clips, normalised outputs)",
    "replay_error_local_m": "held-out replay: local bone error (m)",
    "actual_sparsity": "fraction of pruned prunable weights (masks)",
    "unmasked_params": "parameters not masked (all leaves)",
    "nonzero_values": "non-zero parameter values after masking",
}


def unmasked_counts(params: Any, masks: Any) -> np.ndarray:
    """``(M,)`` parameters not masked per model of stacked ``params`` / ``masks`` (every leaf counted)."""
    total = None
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks)):
        p, m = np.asarray(p), np.asarray(m)
        per_model = int(np.prod(p.shape[1:]))
        if m.ndim == p.ndim:  # a pruned leaf: its full-shape mask
            n = np.count_nonzero(m.reshape(m.shape[0], -1), axis=1)
        else:  # stacked scalar True: nothing of it is pruned
            n = np.full(p.shape[0], per_model)
        total = n if total is None else total + n
    return np.asarray(total, np.int64)


def masked_params(params: Any, masks: Any) -> Any:
    """Stacked ``params`` with every masked entry set to exactly zero (already so after training)."""
    return jax.tree.map(lambda p, m: np.where(np.asarray(m), p, 0).astype(np.asarray(p).dtype)
                        if np.ndim(m) == np.ndim(p) else np.asarray(p), params, masks)


def replay_window_set(config: ml_collections.ConfigDict, dataset: Any) -> ReplayWindows:
    """The held-out windows every experiment replays: ``study.max_replay_windows`` windows of
    ``study.replay_window_seconds`` from the clips of ``study.eval_split``."""
    st = config.study
    frames = max(2, int(round(st.replay_window_seconds * st.fps)))
    return held_out_windows(dataset, split=st.eval_split, window_frames=frames,
                            max_windows=int(st.max_replay_windows), fps=float(st.fps))


def evaluation_settings(config: ml_collections.ConfigDict, windows: ReplayWindows) -> dict[str, Any]:
    """How :func:`evaluate_models` measured, for an experiment's ``results.json``: the :data:`SCENARIOS`
    rolled out (speed and length), the held-out split and the replay windows (:func:`replay_window_set`)."""
    st = config.study
    return {"scenarios": {"names": list(SCENARIOS), "walk_speed": st.walk_speed, "seconds": st.scenario_seconds},
            "eval_split": st.eval_split,
            "replay_windows": {"count": windows.num_windows, "seconds": st.replay_window_seconds,
                               "clips": sorted(set(windows.clips))}}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Per-model metrics of some models of one sweep.

    Attributes:
      indices: model indices in the sweep; seeds: their seeds.
      values: metric name (:data:`METRICS`) -> ``(M,)`` values in ``indices`` order.
      rollouts: the :class:`~mann_jax.evaluate.controller.ScenarioRollouts` (for videos).
      positions: each model's position on the model axis of ``rollouts``.
    """

    indices: tuple[int, ...]
    seeds: tuple[int, ...]
    values: dict[str, np.ndarray]
    rollouts: Any
    positions: tuple[int, ...]

    def subset(self, indices: Sequence[int]) -> Evaluation:
        """The evaluation of the models ``indices`` (sweep indices, all among :attr:`indices`)."""
        where = [self.indices.index(int(i)) for i in indices]
        return Evaluation(indices=tuple(int(i) for i in indices), seeds=tuple(self.seeds[w] for w in where),
                          values={k: v[where] for k, v in self.values.items()}, rollouts=self.rollouts,
                          positions=tuple(self.positions[w] for w in where))


def evaluate_models(models: TrainedModels, indices: Sequence[int], dataset: Any, config: ml_collections.ConfigDict,
                    windows: Any, *, scenario_names: Sequence[str] = SCENARIOS) -> Evaluation:
    """Scenario metrics, validation / test loss, held-out replay error and counts of models ``indices``."""
    idx = [int(i) for i in indices]
    masks = jax.tree.map(lambda m: np.asarray(m)[np.asarray(idx)], models.masks)
    params = masked_params(models.select(idx), masks)
    values: dict[str, Any] = {}
    fps = float(config.study.fps)
    scen = study_scenarios(config.study, fps=fps, names=list(scenario_names))
    rollouts = run_scenarios(models.fns, params, dataset, scen, fps=fps)
    per_model = rollouts.metrics(fps=fps)
    for name in scenario_names:
        values[f"{name}_skating_cm_per_frame"] = [m[name]["skating_cm_per_frame"] for m in per_model]
        if name == "walk":
            # Skating above y = 0 (the study's definition) is blind to paws hovering higher than
            # H = 2.5 cm; the support-relative figure, the paw height and the speed show that case.
            values["walk_skating_support_cm_per_frame"] = [m["walk"]["skating_support_cm_per_frame"]
                                                           for m in per_model]
            values["walk_lowest_paw_m"] = [m["walk"]["lowest_paw_height_median_m"] for m in per_model]
            values["walk_speed_m_per_s"] = [m["walk"]["speed_after_1s"]["mean_m_per_s"] for m in per_model]
        if name in TURNS:
            values[f"{name}_frozen_fraction"] = [m[name]["frozen_while_turning"]["fraction"] for m in per_model]
    turns = [t for t in TURNS if t in scenario_names]
    if turns:
        values["frozen_fraction"] = np.mean([values[f"{t}_frozen_fraction"] for t in turns], axis=0)
    for split, key in (("val", "val_loss"), (config.study.eval_split, "test_loss")):
        if not dataset.split_mask(split).any():
            raise ConfigError(f"the {split!r} split has no rows: nothing to evaluate {key} on")
    values["val_loss"] = [models.rows[i]["val_loss"] for i in idx]  # the sweep measured it on the final weights
    eval_loss = make_eval_loss(models.fns, chunk=EVAL_CHUNK)
    x_test, y_test = dataset.arrays(config.study.eval_split)
    values["test_loss"] = [eval_loss(jax.tree.map(lambda a, j=j: a[j], params), x_test, y_test)
                          for j in range(len(idx))]
    errors = replay_windows(models.fns, params, dataset, windows, fps=fps)
    values["replay_error_local_m"] = errors["local"].reshape(len(idx), -1).mean(axis=1)
    values["actual_sparsity"] = [models.rows[i]["actual_sparsity"] for i in idx]
    values["unmasked_params"] = unmasked_counts(params, masks)
    values["nonzero_values"] = [sum(int(np.count_nonzero(np.asarray(a)[j])) for a in jax.tree.leaves(params))
                                for j in range(len(idx))]
    return Evaluation(indices=tuple(idx), seeds=tuple(int(models.seeds[i]) for i in idx),
                      values={k: np.asarray(v) for k, v in values.items()}, rollouts=rollouts,
                      positions=tuple(range(len(idx))))


def evaluation_data(ev: Evaluation, name: str) -> dict[str, Any]:
    """JSON of an :class:`Evaluation`: sweep name, model indices, seeds, per-metric summaries."""
    return {"models": name, "indices": list(ev.indices), "seeds": list(ev.seeds),
            "metrics": {k: stats.summary(v) for k, v in ev.values.items()}}
