"""Evaluation of trained controllers: scripted scenarios and held-out replays, for a stack of models.

Everything here takes the parameters of several models of one config stacked on a leading model
axis (a sweep's ``state.params``, or :func:`mann_jax.control.rollout.stack_params`) and rolls them
out in ONE vmapped call per batch of characters (:func:`mann_jax.control.rollout.rollout`):

* :func:`run_scenarios` — scripted commands (walk, turn, run, sit, lie, jump), every model and
  every scenario at once, from the same typical starting pose; :func:`motion_metrics` measures
  each rollout (foot skating as the study, bone-length drift, frozen-while-turning, speed
  tracking, heading, hips and paw heights).
* :func:`held_out_windows` / :func:`replay_windows` — the clips of a split never used for training
  (``"test"``), cut into windows of equal length; each window is replayed from the clip's true
  state at its start (the clip's trajectory and styles drive the character, see
  :mod:`mann_jax.control.rollout`), so the per-frame bone error measures short-horizon quality on
  unseen motion, per style label of the frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from mann_jax.config_errors import ConfigError
from mann_jax.control import scenarios as scenario_lib
from mann_jax.control.rollout import (
    Replay,
    Rollout,
    initial_state_from_input,
    replay_errors,
    replay_from_rows,
    rollout,
    stack,
    start_row,
)
from mann_jax.data import layout
from mann_jax.evaluate.motion import bone_length_drift, frozen_while_turning, jitter, root_speed_tracking
from mann_jax.evaluate.skating import FloorMode, foot_skating, ground_height, paw_positions


def motion_metrics(bones: np.ndarray, root_positions: np.ndarray, root_directions: np.ndarray,
                   commanded_speed: np.ndarray | None = None, *, fps: float,
                   floor: FloorMode = "floor") -> dict[str, Any]:
    """Every motion metric of ONE rollout (``bones (T, 27, 3)``, roots ``(T, 3)``), as plain floats.

    Args:
      floor: the headline skating's paw heights above ``y = 0`` (``"floor"``, the study) or above
        the support estimate (``"support"``). ``skating_support_cm_per_frame`` is always the
        support-relative figure: the study's measure is blind to a paw sliding while it hovers
        higher than 2.5 cm above ``y = 0``.
    """
    paws = paw_positions(bones)
    sk = foot_skating(paws, fps=fps, floor_height=ground_height(paws, floor=floor, fps=fps))
    sk_support = sk if floor == "support" else foot_skating(
        paws, fps=fps, floor_height=ground_height(paws, floor="support", fps=fps))
    drift = bone_length_drift(bones)
    frozen = frozen_while_turning(root_positions, root_directions, paws, fps=fps)
    heading = np.degrees(np.arctan2(root_directions[-1, 0], root_directions[-1, 2]))
    out: dict[str, Any] = {
        "skating_cm_per_frame": float(sk.cm_per_frame),
        "skating_cm_per_second": float(sk.cm_per_second),
        "skating_per_paw_cm_per_frame": dict(zip(layout.PAWS, map(float, sk.per_paw_cm_per_frame))),
        "skating_support_cm_per_frame": float(sk_support.cm_per_frame),
        "bone_length_drift_m": float(drift.mean_m),
        "bone_length_drift_relative": float(drift.mean_relative),
        "bone_length_drift_max_m": float(drift.max_m),
        "jitter_m_per_s3": float(jitter(bones, fps=fps)),
        "frozen_while_turning": {"fraction": float(frozen.fraction), "turning_frames": int(frozen.turning_frames),
                                 "frozen_frames": int(frozen.frozen_frames)},
        "hips_height_median_m": float(np.median(bones[:, layout.BONES.index("Hips"), 1])),
        "lowest_paw_height_median_m": float(np.median(paws[..., 1].min(axis=-1))),
        "final_root_position_m": [float(v) for v in root_positions[-1]],
        "final_heading_deg": float(heading),
        "finite": bool(np.all(np.isfinite(bones))),
    }
    if commanded_speed is not None:
        tr = root_speed_tracking(root_positions, commanded_speed, fps=fps, skip_frames=int(fps))
        out["speed_after_1s"] = {"mean_m_per_s": float(tr.mean_speed), "commanded_m_per_s": float(tr.mean_commanded),
                                 "mean_abs_error_m_per_s": float(tr.mean_abs_error)}
    return out


# ----------------------------------------------------------------------------- scenarios


def study_scenarios(study: Any, *, fps: float, names: Sequence[str] | None = None) -> list[scenario_lib.Scenario]:
    """The scripted scenarios of the study's evaluations, sized by ``config.study``.

    Each registered scenario (:data:`mann_jax.control.scenarios.SCENARIOS`) says how the study sizes
    it from ``scenario_seconds``, ``walk_speed`` and ``run_speed``; ``names=None``: every one the
    study sizes, in table order.

    Raises:
      ValueError: a name the study does not size.
    """
    sizing = scenario_lib.StudySizing(seconds=float(study.scenario_seconds), walk_speed=float(study.walk_speed),
                                      run_speed=float(study.run_speed))
    known = scenario_lib.study_scenario_names()
    names = list(known) if names is None else list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown study scenario(s) {unknown}; expected some of {list(known)}")
    return [scenario_lib.study_scenario(n, sizing, fps=fps) for n in names]


@dataclasses.dataclass(frozen=True)
class ScenarioRollouts:
    """Rollouts of M models under S scenarios (numpy, scenarios padded to the longest).

    Attributes:
      scenarios: the scenarios, in order.
      result: the :class:`Rollout`, leading axes ``(M, S, T)``.
      commanded_speed: ``(S, T)`` m/s.
      start_row: the dataset row every character started from.
    """

    scenarios: tuple[scenario_lib.Scenario, ...]
    result: Rollout
    commanded_speed: np.ndarray
    start_row: int

    def frames(self, s: int) -> int:
        """Frames of scenario ``s`` before padding."""
        return self.scenarios[s].num_frames

    def metrics(self, *, fps: float, floor: FloorMode = "floor") -> list[dict[str, dict[str, Any]]]:
        """Per model, ``{scenario name: motion_metrics}`` (padding excluded)."""
        r = self.result
        out = []
        for m in range(np.shape(r.bones)[0]):
            per = {}
            for s, sc in enumerate(self.scenarios):
                t = sc.num_frames
                per[sc.name] = motion_metrics(np.asarray(r.bones[m, s, :t]), np.asarray(r.root_positions[m, s, :t]),
                                              np.asarray(r.root_directions[m, s, :t]), self.commanded_speed[s, :t],
                                              fps=fps, floor=floor)
            out.append(per)
        return out


def run_scenarios(fns: Any, params: Any, dataset: Any, scenarios: Sequence[scenario_lib.Scenario], *, fps: float,
                  expert_mask: Any = None, start_style: str = "Idle") -> ScenarioRollouts:
    """Every model of the stack ``params`` under every scenario, in one vmapped rollout.

    Every character starts from the same typical ``start_style`` pose of the dataset
    (:func:`mann_jax.control.rollout.start_row`).
    """
    control, commanded = scenario_lib.stack_scenarios(list(scenarios))
    row = start_row(dataset, style=start_style)
    initial = stack([initial_state_from_input(dataset.inputs[row])] * len(scenarios))
    result = rollout(fns, params, dataset.normalisation, initial, control, fps=fps, expert_mask=expert_mask,
                     models_axis=True)
    result = jax.tree.map(np.asarray, result)
    return ScenarioRollouts(scenarios=tuple(scenarios), result=result, commanded_speed=commanded, start_row=row)


# ----------------------------------------------------------------------------- held-out replays


@dataclasses.dataclass(frozen=True)
class ReplayWindows:
    """Equal-length windows of held-out clips, stacked as characters (a :class:`Replay` with axis S).

    Attributes:
      replay: the stacked replay (initial states, controls, references with a leading axis S).
      styles: ``(S, T)`` style label (index into :data:`layout.STYLES`) of every frame.
      clips: clip name of each window; ``start_frames``: its first frame in the clip.
    """

    replay: Replay
    styles: np.ndarray
    clips: tuple[str, ...]
    start_frames: tuple[int, ...]

    @property
    def num_windows(self) -> int:
        return len(self.clips)


def held_out_windows(dataset: Any, *, split: str = "test", window_frames: int, max_windows: int,
                     fps: float) -> ReplayWindows:
    """Windows of ``window_frames`` consecutive frames of the (non-mirrored) clips of ``split``.

    Windows are cut back to back from every clip, then at most ``max_windows`` are kept, evenly
    spread over the list (deterministic).

    Raises:
      ValueError: the split has no clip long enough for one window.
    """
    if window_frames < 2:
        raise ConfigError(f"replay windows need at least 2 frames, got {window_frames}")
    mask = dataset.split_mask(split) & ~np.asarray(dataset.mirrored)
    candidates: list[tuple[int, np.ndarray]] = []
    for c in np.unique(dataset.clip_index[mask]):
        rows = np.flatnonzero(mask & (dataset.clip_index == c))
        rows = rows[np.argsort(dataset.frames[rows], kind="stable")]
        # Only runs of consecutive frames (a clip's rows are consecutive unless frames were dropped).
        breaks = np.flatnonzero(np.diff(dataset.frames[rows]) != 1) + 1
        for run in np.split(rows, breaks):
            for start in range(0, len(run) - window_frames + 1, window_frames):
                candidates.append((int(c), run[start:start + window_frames]))
    if not candidates:
        raise ConfigError(f"no {split} clip has {window_frames} consecutive frames to replay; clips of the split: "
                         f"{[n for n, s in zip(dataset.clip_names, dataset.clip_splits) if s == split]}")
    if len(candidates) > max_windows:
        pick = np.linspace(0, len(candidates) - 1, max_windows).round().astype(int)
        candidates = [candidates[i] for i in pick]
    replays = [replay_from_rows(dataset.inputs[rows], dataset.outputs[rows], fps=fps, frames=dataset.frames[rows],
                                name=dataset.clip_names[c]) for c, rows in candidates]
    stacked = Replay(
        name=f"{split} windows", initial=stack([r.initial for r in replays]),
        control=stack([r.control for r in replays]),
        reference_bones=np.stack([r.reference_bones for r in replays]),
        reference_root_positions=np.stack([r.reference_root_positions for r in replays]),
        reference_root_directions=np.stack([r.reference_root_directions for r in replays]),
        frames=np.stack([r.frames for r in replays]))
    return ReplayWindows(replay=stacked, styles=np.stack([np.asarray(dataset.styles)[rows] for _, rows in candidates]),
                         clips=tuple(dataset.clip_names[c] for c, _ in candidates),
                         start_frames=tuple(int(dataset.frames[rows[0]]) for _, rows in candidates))


def replay_windows(fns: Any, params: Any, dataset: Any, windows: ReplayWindows, *, fps: float,
                   expert_mask: Any = None) -> dict[str, np.ndarray]:
    """Per model: bone errors of the replayed windows.

    Returns:
      ``{"local": (M, S, T), "world": (M, S, T), "root": (M, S, T)}`` metres: posture error (each pose
      relative to its own root), world error (includes root drift), root drift.
    """
    r = windows.replay
    result = rollout(fns, params, dataset.normalisation, r.initial, r.control, fps=fps, expert_mask=expert_mask,
                     models_axis=True)
    result = jax.tree.map(np.asarray, result)
    err = replay_errors(result, r)
    return {"local": np.asarray(err.local), "world": np.asarray(err.world), "root": np.asarray(err.root)}


def error_by_style(errors: np.ndarray, styles: np.ndarray) -> dict[str, np.ndarray]:
    """Mean of ``errors (M, S, T)`` over the frames of each style (``styles (S, T)``): ``{style: (M,)}``.

    Styles with no frame are left out.
    """
    out = {}
    for i, name in enumerate(layout.STYLES):
        sel = styles == i
        if sel.any():
            out[name] = errors[:, sel].mean(axis=-1)
    return out
