"""Expert ablation (the study's Table 2, made quantitative), for any stack of models of one config.

A **condition** is a set of experts switched off (:func:`mann_jax.model.MANN` ``expert_mask``: the
coefficient of an expert that is off is removed and the others are renormalised to sum 1):
``"none"`` (the all-ones mask: the normal model) and ``"expert_k"`` (expert k off), K + 1 in all.
Under every condition, every model of the stack is measured in one vmapped call each for

* the scripted scenarios (:data:`SCENARIOS`: those registered for it, walk, run, turn90, sit, lie, jump;
  :func:`mann_jax.evaluate.controller.run_scenarios`): foot skating (above y = 0, the study's, and
  above the rollout's own support, which hovering paws cannot hide from) and every other motion
  metric, and whether the commanded **action happens** (:func:`action_checks`);
* the held-out replay windows (:func:`mann_jax.evaluate.controller.replay_windows`): the
  posture error per style label of the frames.

The **impact** of switching expert k off is ``metric(expert_k) − metric(none)`` per (expert,
scenario or style) (:func:`impact`); :func:`impact_correlation` compares two models' impact
matrices with Spearman's rank correlation.

**Action checks.** Every threshold comes from the data (:func:`action_thresholds`), not from a
guess about the skeleton:

=========== ==================================================================================
scenario    the action happens when
=========== ==================================================================================
walk, run   the mean root speed after the first second is at least half the commanded speed
turn90      the final heading is within 45° of the commanded heading
sit         the median Hips height over the last half of the Sit hold is below the midpoint
            between the dataset's median Hips heights of Idle and of Sit rows (non-mirrored
            rows; the Hips position's y in the input posture, which is relative to the floor)
lie         likewise with the Lie rows
jump        the lowest paw is above ``data.contact_max_height`` (the height under which the
            data calls a paw in contact) on some frame from the start of the Jump command to
            1 s after its end (clamped to the scenario)
=========== ==================================================================================

A check is ``None`` (not measured) when the data has no rows of the needed style (e.g. the
procedural toy data has no Sit rows); a rollout with non-finite bones fails every check.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from mann_jax.config_errors import ConfigError
from mann_jax.control import scenarios as scenario_lib
from mann_jax.control.scenarios import Scenario
from mann_jax.data import layout
from mann_jax.evaluate.controller import (
    ReplayWindows,
    ScenarioRollouts,
    error_by_style,
    held_out_windows,
    replay_windows,
    run_scenarios,
    study_scenarios,
)
from mann_jax.evaluate.skating import paw_positions

#: The scenarios of the ablation, in table order (those registered with ``ablation=True``).
SCENARIOS: tuple[str, ...] = scenario_lib.ablation_scenario_names()
NONE = "none"
SPEED_FRACTION = 0.5  # walk / run: at least this fraction of the commanded speed after 1 s
HEADING_TOLERANCE_DEG = 45.0  # turn: final heading within this of the command
_HIPS = layout.BONES.index("Hips")


def condition_names(n_experts: int) -> tuple[str, ...]:
    """``("none", "expert_0", ..., "expert_{K-1}")``."""
    if n_experts < 2:
        raise ConfigError(f"an expert ablation needs at least 2 experts (one off, the others renormalised), "
                         f"got {n_experts}")
    return (NONE,) + tuple(f"expert_{k}" for k in range(n_experts))


def num_experts(fns: Any) -> int:
    """Number of experts of a model: the width of its gating output (shape evaluation, no compute)."""
    x = jax.ShapeDtypeStruct((layout.INPUT_DIM,), np.float32)
    _, gating = jax.eval_shape(lambda p, v: fns.predict(p, v, return_gating=True), fns.params, x)
    return int(gating.shape[-1])


def condition_masks(n_experts: int) -> np.ndarray:
    """``(K + 1, K)`` 0/1 expert masks of :func:`condition_names`: row 0 all ones, row k + 1 expert k off."""
    condition_names(n_experts)  # validates K
    masks = np.ones((n_experts + 1, n_experts), np.float32)
    masks[np.arange(1, n_experts + 1), np.arange(n_experts)] = 0.0
    return masks


# ----------------------------------------------------------------------------- action checks


@dataclasses.dataclass(frozen=True)
class ActionThresholds:
    """The thresholds of :func:`action_checks`, derived from the data (see the module docstring).

    Attributes:
      idle_hips_m, sit_hips_m, lie_hips_m: median Hips height of the dataset's non-mirrored rows of
        each style (None: no such rows).
      sit_below_m, lie_below_m: the sit / lie thresholds (midpoints; None: not measurable).
      airborne_above_m: a paw above this height is off the ground (``data.contact_max_height``).
      speed_fraction: walk / run must reach this fraction of the commanded speed.
      heading_tolerance_deg: the turn's final heading tolerance.
    """

    idle_hips_m: float | None
    sit_hips_m: float | None
    lie_hips_m: float | None
    sit_below_m: float | None
    lie_below_m: float | None
    airborne_above_m: float
    speed_fraction: float = SPEED_FRACTION
    heading_tolerance_deg: float = HEADING_TOLERANCE_DEG

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _median_hips(dataset: Any, style: str) -> float | None:
    rows = ~np.asarray(dataset.mirrored) & (np.asarray(dataset.styles) == layout.STYLES.index(style))
    if not rows.any():
        return None
    return float(np.median(np.asarray(dataset.inputs)[rows, layout.input_bone("Hips", "pos")][:, 1]))


def action_thresholds(dataset: Any, *, contact_max_height: float) -> ActionThresholds:
    """Thresholds of the action checks from a dataset's Hips heights per style and the contact height.

    Raises:
      ValueError: the dataset has no Idle rows (every rest threshold is measured against Idle).
    """
    idle = _median_hips(dataset, "Idle")
    if idle is None:
        raise ConfigError("the dataset has no (non-mirrored) Idle rows: the sit / lie thresholds are midpoints "
                         "between the Idle and the Sit / Lie Hips heights")
    sit, lie = _median_hips(dataset, "Sit"), _median_hips(dataset, "Lie")
    return ActionThresholds(idle_hips_m=idle, sit_hips_m=sit, lie_hips_m=lie,
                            sit_below_m=None if sit is None else 0.5 * (idle + sit),
                            lie_below_m=None if lie is None else 0.5 * (idle + lie),
                            airborne_above_m=float(contact_max_height))


def _wrap_deg(a: float) -> float:
    return (a + 180.0) % 360.0 - 180.0


ActionCheck = Callable[[Scenario, np.ndarray, dict[str, Any], ActionThresholds, float],
                      tuple[float, float | None, str, bool]]


def _speed_check(scenario: Scenario, bones: np.ndarray, metrics: dict[str, Any], thresholds: ActionThresholds,
                 fps: float) -> tuple[float, float | None, str, bool]:
    tr = metrics["speed_after_1s"]
    value, threshold = tr["mean_m_per_s"], thresholds.speed_fraction * tr["commanded_m_per_s"]
    return value, threshold, "mean speed after 1 s (m/s) >= threshold", value >= threshold


def _heading_check(scenario: Scenario, bones: np.ndarray, metrics: dict[str, Any], thresholds: ActionThresholds,
                   fps: float) -> tuple[float, float | None, str, bool]:
    command = math.degrees(float(scenario.control.heading[-1]))
    value = abs(_wrap_deg(metrics["final_heading_deg"] - command))
    threshold = thresholds.heading_tolerance_deg
    return value, threshold, "|final heading - command| (deg) <= threshold", value <= threshold


def _rest_check(scenario: Scenario, bones: np.ndarray, metrics: dict[str, Any], thresholds: ActionThresholds,
                fps: float) -> tuple[float, float | None, str, bool]:
    name = scenario.name
    threshold = thresholds.sit_below_m if name == "sit" else thresholds.lie_below_m
    hold = bones[scenario.events[name]:, _HIPS, 1]
    value = float(np.median(hold[len(hold) // 2:]))
    return value, threshold, "median Hips height over the last half of the hold (m) < threshold", \
        threshold is not None and value < threshold


def _airborne_check(scenario: Scenario, bones: np.ndarray, metrics: dict[str, Any], thresholds: ActionThresholds,
                    fps: float) -> tuple[float, float | None, str, bool]:
    start = scenario.events["jump"]
    stop = min(len(bones), start + int(round((scenario.params["jump_seconds"] + 1.0) * fps)))
    lowest = paw_positions(bones[start:stop])[..., 1].min(axis=-1)
    value, threshold = float(lowest.max()), thresholds.airborne_above_m
    return value, threshold, "highest lowest-paw height from the command to 1 s after it (m) > threshold", \
        value > threshold


#: The action checks by kind: ``(scenario, bones, metrics, thresholds, fps) -> (value, threshold, what,
#: ok)``; a registered scenario names its kind (:attr:`mann_jax.control.scenarios.ScenarioSpec.action`).
#: A threshold of None means the data cannot measure it (the check is then ``None``).
ACTION_CHECKS: dict[str, ActionCheck] = {
    "speed": _speed_check,
    "heading": _heading_check,
    "rest": _rest_check,
    "airborne": _airborne_check,
}


def check_action(scenario: Scenario, bones: np.ndarray, metrics: dict[str, Any], thresholds: ActionThresholds, *,
                 fps: float) -> dict[str, Any]:
    """Does the commanded action of one rollout happen? ``{"happens": bool | None, "value", "threshold", "what"}``.

    Args:
      scenario: a registered scenario whose spec names an action check (by name).
      bones: ``(T, 27, 3)`` the rollout (padding removed).
      metrics: its :func:`mann_jax.evaluate.controller.motion_metrics`.
    """
    spec = scenario_lib.SCENARIOS.get(scenario.name)
    if spec is None or spec.action is None:
        checked = [n for n, s in scenario_lib.SCENARIOS.items() if s.action is not None]
        raise ValueError(f"no action check for scenario {scenario.name!r}; expected one of {tuple(checked)}")
    value, threshold, what, ok = ACTION_CHECKS[spec.action](scenario, bones, metrics, thresholds, fps)
    if threshold is None:
        return {"happens": None, "value": float(value), "threshold": None,
                "what": what + " (no such rows in the data)"}
    finite = bool(np.all(np.isfinite(bones)))
    value = float(value)
    return {"happens": bool(ok and finite and math.isfinite(value)), "value": value, "threshold": float(threshold),
            "what": what}


def action_checks(rollouts: ScenarioRollouts, metrics: Sequence[dict[str, dict[str, Any]]],
                  thresholds: ActionThresholds, *, fps: float) -> list[dict[str, dict[str, Any]]]:
    """Per model, ``{scenario: check_action(...)}`` of every scenario of ``rollouts``."""
    out = []
    for m, per in enumerate(metrics):
        out.append({sc.name: check_action(sc, np.asarray(rollouts.result.bones[m, s, :sc.num_frames]), per[sc.name],
                                          thresholds, fps=fps)
                    for s, sc in enumerate(rollouts.scenarios)})
    return out


# ----------------------------------------------------------------------------- the ablation


@dataclasses.dataclass(frozen=True)
class Ablation:
    """Every measurement of an ablation of M models (axis order: condition C = K + 1, model M, then the item).

    Attributes:
      conditions, scenarios, styles: the names along those axes (``styles``: those with held-out frames).
      skating: ``(C, M, S)`` foot skating, cm per frame (the study's measure: paw heights above y = 0).
      skating_support: ``(C, M, S)`` the same with paw heights above the rollout's own support (the
        lowest paw over 2 s), which still counts a paw that slides while hovering above 2.5 cm.
      happens: ``(C, M, S)`` 1 / 0 the action happens, NaN not measured.
      action_value: ``(C, M, S)`` the checked quantity; ``action_threshold``: ``(S,)`` its threshold (NaN: none).
      replay_error: ``(C, M, Y)`` mean posture error (m) over the held-out frames of each style.
      metrics: ``[condition][model] -> {scenario: motion_metrics}``.
      checks: ``[condition][model] -> {scenario: check_action(...)}``.
      thresholds: the :class:`ActionThresholds`.
      windows: the held-out windows replayed (clips, frames).
    """

    conditions: tuple[str, ...]
    scenarios: tuple[str, ...]
    styles: tuple[str, ...]
    skating: np.ndarray
    skating_support: np.ndarray
    happens: np.ndarray
    action_value: np.ndarray
    action_threshold: np.ndarray
    replay_error: np.ndarray
    metrics: list[list[dict[str, dict[str, Any]]]]
    checks: list[list[dict[str, dict[str, Any]]]]
    thresholds: ActionThresholds
    windows: dict[str, Any]

    @property
    def num_experts(self) -> int:
        return len(self.conditions) - 1


def impact(values: np.ndarray) -> np.ndarray:
    """``(C, M, X)`` per-condition values → ``(M, K, X)`` impacts ``value(expert k off) − value(none)``."""
    v = np.asarray(values, np.float64)
    if v.ndim < 2 or v.shape[0] < 2:
        raise ValueError(f"impact needs (conditions >= 2, ...) values with 'none' first, got shape {v.shape}")
    return np.moveaxis(v[1:] - v[:1], 0, 1)


def impact_correlation(a: np.ndarray, b: np.ndarray, *, centred: bool = False) -> float:
    """Spearman's rank correlation of two impact matrices ``(K, X)``, flattened (NaN cells left out).

    Args:
      centred: first subtract each column's mean over experts, so that a scenario's overall
        sensitivity (every expert off raises its skating) does not count as agreement; what is
        left is which experts matter more or less for each scenario.

    Returns:
      rho, or NaN when fewer than 3 cells are finite in both or one matrix is constant.
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"impact matrices of different shapes {a.shape} and {b.shape}")
    if centred:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            a, b = a - np.nanmean(a, axis=0, keepdims=True), b - np.nanmean(b, axis=0, keepdims=True)
    a, b = a.ravel(), b.ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def window_frames(study: Any, fps: float) -> int:
    """Frames of a held-out replay window (``study.replay_window_seconds``)."""
    return max(2, int(round(float(study.replay_window_seconds) * fps)))


def run_ablation(fns: Any, params: Any, dataset: Any, study: Any, *, fps: float, contact_max_height: float,
                 scenarios: Sequence[str] = SCENARIOS, windows: ReplayWindows | None = None,
                 progress: bool = False) -> Ablation:
    """Switch each expert off in turn for every model of the stack ``params`` and measure (module docstring).

    Args:
      fns: the models' :class:`mann_jax.train.ModelFunctions`.
      params: parameters stacked on a leading model axis.
      dataset: the training dataset (normalisation, start pose, held-out clips, thresholds).
      study: ``config.study`` (scenario sizes, eval split, replay windows).
      contact_max_height: ``config.data.contact_max_height`` (the jump check).
      windows: held-out windows to replay (default: :func:`held_out_windows` of ``study.eval_split``).
    """
    n_experts = num_experts(fns)
    names, masks = condition_names(n_experts), condition_masks(n_experts)
    scs = study_scenarios(study, fps=fps, names=list(scenarios))
    if windows is None:
        windows = held_out_windows(dataset, split=str(study.eval_split), window_frames=window_frames(study, fps),
                                   max_windows=int(study.max_replay_windows), fps=fps)
    thresholds = action_thresholds(dataset, contact_max_height=contact_max_height)
    all_metrics, all_checks, errors = [], [], []
    for c, (name, mask) in enumerate(zip(names, masks)):
        if progress:
            print(f"  ablation: condition {name} ({c + 1}/{len(names)})", file=sys.stderr, flush=True)
        ro = run_scenarios(fns, params, dataset, scs, fps=fps, expert_mask=mask)
        met = ro.metrics(fps=fps)
        all_metrics.append(met)
        all_checks.append(action_checks(ro, met, thresholds, fps=fps))
        errors.append(error_by_style(replay_windows(fns, params, dataset, windows, fps=fps, expert_mask=mask)["local"],
                                     windows.styles))
    styles = tuple(s for s in layout.STYLES if s in errors[0])
    sc_names = tuple(sc.name for sc in scs)
    n_models = len(all_metrics[0])

    def grid(fn: Any) -> np.ndarray:
        return np.array([[[fn(c, m, s) for s in sc_names] for m in range(n_models)] for c in range(len(names))],
                        np.float64)

    def happens(c: int, m: int, s: str) -> float:
        h = all_checks[c][m][s]["happens"]
        return math.nan if h is None else float(h)

    thr = np.array([math.nan if all_checks[0][0][s]["threshold"] is None else all_checks[0][0][s]["threshold"]
                    for s in sc_names])
    return Ablation(
        conditions=names, scenarios=sc_names, styles=styles,
        skating=grid(lambda c, m, s: all_metrics[c][m][s]["skating_cm_per_frame"]),
        skating_support=grid(lambda c, m, s: all_metrics[c][m][s]["skating_support_cm_per_frame"]),
        happens=grid(happens), action_value=grid(lambda c, m, s: all_checks[c][m][s]["value"]),
        action_threshold=thr,
        replay_error=np.array([[[float(errors[c][y][m]) for y in styles] for m in range(n_models)]
                               for c in range(len(names))], np.float64),
        metrics=all_metrics, checks=all_checks, thresholds=thresholds,
        windows={"count": windows.num_windows, "frames": int(windows.styles.shape[1]), "split": str(study.eval_split),
                 "clips": list(windows.clips), "start_frames": list(windows.start_frames)})
