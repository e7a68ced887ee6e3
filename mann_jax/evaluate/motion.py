"""Quality metrics of generated motion besides foot skating.

All functions take world-space arrays with any leading batch axes (models, characters) before the
frame axis ``T`` and are vectorised over them; numpy in → numpy out, jax in → jax out. Positions
are metres, y is up, bones in the MANN order (:data:`mann_jax.data.layout.BONES`).

Definitions:

* **Bone-length drift** — for every bone (the segment from a point to its parent,
  :data:`DOG_PARENTS`), ``|l_t − l_ref|`` averaged over frames, in metres and relative to
  ``l_ref``. ``l_ref`` is the skeleton's rest length (``reference=`` an array) or the first
  frame's length (``reference="first"``). MANN predicts positions, not rotations, so nothing holds
  the lengths fixed; mocap has zero drift.
* **Root speed tracking error** — the achieved horizontal root speed ``|Δroot_xz|·fps`` (forward
  difference, frames ``t → t + 1``) against the commanded speed of frame ``t``: mean absolute error
  in m/s over the frames kept (``skip_frames`` drops the start, where the character is still
  accelerating toward the command).
* **Jitter** — mean over joints and frames of the jerk magnitude ``|Δ³p|·fps³`` (m/s³): third
  finite difference of the positions.
* **Frozen while turning** (the artefact of the study's Fig. 2: the character rotates as a
  statue instead of stepping) — among the frames whose root yaw rate exceeds
  ``yaw_rate_threshold`` (default 45°/s; a walking turn of 90° in 1 s is 90°/s, straight walking
  stays below 10°/s), the fraction on which ALL four paws have a horizontal speed below
  ``paw_speed_threshold`` (default 0.15 m/s; a swinging paw moves at ~1–2× the body speed, a
  planted one near 0). Paw speeds are measured in the ROOT frame by default (``frame="root"``):
  a statue rotating with the root has zero paw speed there, whereas in the world frame its paws
  sweep around the root and would not read as frozen; ``frame="world"`` is available.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from mann_jax.data import layout
from mann_jax.evaluate.skating import array_module

#: Parent of each of the 27 MANN dog points (:data:`mann_jax.data.layout.BONE_PARENTS`).
DOG_PARENTS: tuple[int, ...] = layout.BONE_PARENTS
#: Name of each bone segment: the child point of the segment (all points but the root).
BONE_SEGMENTS: tuple[str, ...] = layout.BONES[1:]

assert len(DOG_PARENTS) == layout.NUM_BONES


def bone_lengths(positions: Any, parents: tuple[int, ...] = DOG_PARENTS) -> Any:
    """``(..., T, J − 1)`` distance of every non-root point to its parent."""
    xp = array_module(positions)
    child = np.arange(1, len(parents))
    parent = np.asarray(parents[1:])
    d = positions[..., child, :] - positions[..., parent, :]
    return xp.sqrt((d ** 2).sum(axis=-1))


def rest_bone_lengths(offsets: np.ndarray) -> np.ndarray:
    """``(J − 1,)`` rest lengths from a skeleton's ``(J, 3)`` offsets (root dropped)."""
    return np.linalg.norm(np.asarray(offsets)[1:], axis=-1)


class BoneLengthDrift(NamedTuple):
    """Per-bone drift (leading batch axes kept); bones in the order of :data:`BONE_SEGMENTS`.

    Attributes:
      per_bone_m: ``(..., J − 1)`` mean ``|l_t − l_ref|`` over frames, metres.
      per_bone_relative: ``(..., J − 1)`` the same divided by ``l_ref`` (0 for zero-length bones).
      mean_m: ``(...)`` mean over bones, metres.
      mean_relative: ``(...)`` mean of the relative drift over bones longer than 1 cm.
      max_m: ``(...)`` largest ``|l_t − l_ref|`` over bones and frames, metres.
    """

    per_bone_m: Any
    per_bone_relative: Any
    mean_m: Any
    mean_relative: Any
    max_m: Any


def bone_length_drift(
    positions: Any,
    *,
    reference: Any = "first",
    parents: tuple[int, ...] = DOG_PARENTS,
    min_relative_length: float = 0.01,
) -> BoneLengthDrift:
    """Bone-length drift of ``(..., T, J, 3)`` positions.

    Args:
      positions: world positions, metres.
      reference: ``"first"`` (each sequence's first frame) or ``(J − 1,)`` / ``(..., J − 1)``
        reference lengths (e.g. :func:`rest_bone_lengths` of the skeleton).
      parents: parent index per point.
      min_relative_length: bones shorter than this (metres; the dog's Hips→Spine has length 0)
        get relative drift 0 and are left out of ``mean_relative``.
    """
    xp = array_module(positions)
    lengths = bone_lengths(positions, parents)
    if isinstance(reference, str):
        if reference != "first":
            raise ValueError(f"reference must be 'first' or an array of lengths, got {reference!r}")
        ref = lengths[..., :1, :]
    else:
        ref = xp.asarray(reference)[..., None, :]
    err = xp.abs(lengths - ref)
    per_bone = err.mean(axis=-2)
    ref0 = ref[..., 0, :]
    measurable = ref0 > min_relative_length
    relative = xp.where(measurable, per_bone / xp.maximum(ref0, min_relative_length), 0.0)
    mean_relative = relative.sum(axis=-1) / xp.maximum(measurable.sum(axis=-1), 1)
    return BoneLengthDrift(per_bone_m=per_bone, per_bone_relative=relative, mean_m=per_bone.mean(axis=-1),
                           mean_relative=mean_relative, max_m=err.max(axis=(-2, -1)))


class SpeedTracking(NamedTuple):
    """Root speed against the command (leading batch axes kept).

    Attributes:
      mean_abs_error: ``(...)`` m/s.
      mean_speed: ``(...)`` achieved, m/s.
      mean_commanded: ``(...)`` m/s.
      speed: ``(..., T − 1)`` achieved speed per frame, m/s.
    """

    mean_abs_error: Any
    mean_speed: Any
    mean_commanded: Any
    speed: Any


def root_speed(root_positions: Any, *, fps: float) -> Any:
    """``(..., T − 1)`` horizontal root speed (forward difference), m/s; positions ``(..., T, 2 or 3)``."""
    xp = array_module(root_positions)
    d = root_positions[..., 1:, :] - root_positions[..., :-1, :]
    horizontal = d[..., [0, 2]] if d.shape[-1] == 3 else d
    return xp.sqrt((horizontal ** 2).sum(axis=-1)) * fps


def root_speed_tracking(
    root_positions: Any, commanded_speed: Any, *, fps: float, skip_frames: int = 0
) -> SpeedTracking:
    """Achieved root speed against the commanded speed.

    Args:
      root_positions: ``(..., T, 3)`` (x, y, z; y ignored) or ``(..., T, 2)`` (x, z), metres.
      commanded_speed: ``(..., T)`` m/s (broadcast against the batch axes).
      fps: frames per second.
      skip_frames: leading frames left out of the averages.
    """
    speed = root_speed(root_positions, fps=fps)
    xp = array_module(speed, commanded_speed)
    cmd = xp.asarray(commanded_speed)[..., :-1]
    s, c = speed[..., skip_frames:], cmd[..., skip_frames:]
    return SpeedTracking(mean_abs_error=xp.abs(s - c).mean(axis=-1), mean_speed=s.mean(axis=-1),
                         mean_commanded=xp.broadcast_to(c, s.shape).mean(axis=-1), speed=speed)


def jitter(positions: Any, *, fps: float) -> Any:
    """``(...)`` mean joint jerk magnitude ``|Δ³p|·fps³`` over joints and frames, m/s³."""
    xp = array_module(positions)
    p = positions
    jerk = p[..., 3:, :, :] - 3 * p[..., 2:-1, :, :] + 3 * p[..., 1:-2, :, :] - p[..., :-3, :, :]
    return xp.sqrt((jerk ** 2).sum(axis=-1)).mean(axis=(-2, -1)) * fps ** 3


def yaw_rate(root_directions: Any, *, fps: float) -> Any:
    """``(..., T − 1)`` signed yaw rate (degrees/s, + = turning left) from facing directions.

    ``root_directions`` is ``(..., T, 3)`` (x, y, z) or ``(..., T, 2)`` (x, z), horizontal.
    """
    xp = array_module(root_directions)
    d = root_directions[..., [0, 2]] if root_directions.shape[-1] == 3 else root_directions
    a, b = d[..., :-1, :], d[..., 1:, :]
    # Root-local x (left) of a is (a_z, −a_x); the turn is atan2(left·b, a·b).
    cross = a[..., 1] * b[..., 0] - a[..., 0] * b[..., 1]
    dot = (a * b).sum(axis=-1)
    return xp.degrees(xp.arctan2(cross, dot)) * fps


class FrozenTurning(NamedTuple):
    """The "frozen while turning" measure (leading batch axes kept).

    Attributes:
      fraction: ``(...)`` frozen turning frames / turning frames (0 where nothing turns).
      turning_frames: ``(...)`` frames with ``|yaw rate|`` above the threshold.
      frozen_frames: ``(...)`` of those, frames with every paw below the speed threshold.
    """

    fraction: Any
    turning_frames: Any
    frozen_frames: Any


def frozen_while_turning(
    root_positions: Any,
    root_directions: Any,
    paws: Any,
    *,
    fps: float,
    yaw_rate_threshold: float = 45.0,
    paw_speed_threshold: float = 0.15,
    frame: Literal["root", "world"] = "root",
) -> FrozenTurning:
    """Fraction of turning frames on which all paws stand still (see the module docstring).

    Args:
      root_positions: ``(..., T, 3)`` root on the floor, metres.
      root_directions: ``(..., T, 3)`` horizontal unit facing vectors.
      paws: ``(..., T, 4, 3)`` paw positions, metres.
      fps: frames per second.
      yaw_rate_threshold: degrees/s above which a frame counts as turning.
      paw_speed_threshold: m/s below which a paw counts as still.
      frame: measure paw speeds in the ``"root"`` frame (default) or the ``"world"`` frame.
    """
    xp = array_module(root_positions, root_directions, paws)
    turning = xp.abs(yaw_rate(root_directions, fps=fps)) > yaw_rate_threshold
    if frame == "root":
        d = root_directions
        left = xp.stack([d[..., 2], xp.zeros_like(d[..., 0]), -d[..., 0]], axis=-1)
        rel = paws - root_positions[..., None, :]
        local = xp.stack([(rel * left[..., None, :]).sum(-1), (rel * d[..., None, :]).sum(-1)], axis=-1)
    elif frame == "world":
        local = paws[..., [0, 2]]
    else:
        raise ValueError(f"frame must be 'root' or 'world', got {frame!r}")
    step = local[..., 1:, :, :] - local[..., :-1, :, :]
    paw_speed = xp.sqrt((step ** 2).sum(axis=-1)) * fps
    still = (paw_speed < paw_speed_threshold).all(axis=-1)
    n_turn = turning.sum(axis=-1)
    n_frozen = (turning & still).sum(axis=-1)
    fraction = xp.where(n_turn > 0, n_frozen / xp.maximum(n_turn, 1), 0.0)
    return FrozenTurning(fraction=fraction, turning_frames=n_turn, frozen_frames=n_frozen)


def bone_position_error(positions: Any, reference: Any) -> Any:
    """``(..., T)`` mean over points of the Euclidean distance between two ``(..., T, J, 3)`` arrays."""
    xp = array_module(positions, reference)
    return xp.sqrt(((positions - reference) ** 2).sum(axis=-1)).mean(axis=-1)
