"""Foot skating, exactly as the MANN papers and the pruning study define it.

For one paw and one pair of consecutive frames ``(t, t + 1)``::

    s = v · (2 − 2^(h / H))   if h < H,   else 0

* ``v`` — the paw's horizontal displacement between the two frames (x–z plane, y is up): a
  distance per frame; reported in **cm/frame** (the study's unit) and in cm/s (× fps);
* ``h`` — the paw's height above the floor, the mean of its heights at ``t`` and ``t + 1``
  (symmetric in time); ``floor_height`` is a scalar or a per-frame support height;
* ``H`` — 2.5 cm (:data:`SKATING_HEIGHT`). The weight ``2 − 2^(h/H)`` is 1 on the floor, falls to
  0 at ``H`` and is clipped to 0 above it; a paw BELOW the floor (h < 0) weighs more than 1, as in
  the formula.

The four paws are the End Sites of :data:`mann_jax.data.layout.PAWS` (front left, front right,
hind left, hind right); the headline figure averages them ("all legs") and over frames.

Where the floor is. The study measured height above the floor. The dog's paw sites sit above
y = 0 when planted (front ≈ 2 cm, hind ≈ 0–1 cm on the shared clips), so on the real data the
weight of a planted front paw is ≈ 0.26, not 1. The default here is still the honest reading of
the definition: height above the floor plane ``y = 0`` (``floor="floor"``); the per-clip support
estimate (:func:`mann_jax.data.contacts.estimate_support_height`, the lowest paw over a 2 s window)
is available as ``floor="support"`` for clips whose floor is not at y = 0 and for comparison. A
generated character and its ground truth must of course be measured the same way.

Raised floors: clip ``D1_ex03_KAN02_006`` (mostly on a platform) and the ``D1_ex04_*`` clips
(step-ups) are left out of floor-based figures (:func:`is_flat_floor_clip`).

Arrays: :func:`skating_per_frame` and :func:`foot_skating` take paw positions ``(..., T, 4, 3)``
in metres with any leading batch axes (models, characters) and are vectorised over all of them.
They accept numpy or jax arrays and return the same kind (jax arrays also under ``jit``/``vmap``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mann_jax.data import layout
from mann_jax.data.contacts import paw_indices, support_height

#: H of the skating formula, metres (2.5 cm).
SKATING_HEIGHT = 0.025
#: Clips whose floor is not at y = 0 everywhere (README of the dog data).
RAISED_FLOOR_CLIPS: tuple[str, ...] = ("D1_ex03_KAN02_006",)
RAISED_FLOOR_PREFIXES: tuple[str, ...] = ("D1_ex04_",)

FloorMode = Literal["floor", "support"]


def is_flat_floor_clip(name: str) -> bool:
    """False for the dog clips with raised floors (``D1_ex03_KAN02_006``, ``D1_ex04_*``)."""
    stem = Path(name).stem
    return stem not in RAISED_FLOOR_CLIPS and not stem.startswith(RAISED_FLOOR_PREFIXES)


def array_module(*arrays: Any) -> Any:
    """``jax.numpy`` if any argument is a jax array (or tracer), else ``numpy``."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def skating_weight(height: Any, threshold: float = SKATING_HEIGHT) -> Any:
    """``2 − 2^(h/H)`` below ``H``, 0 at and above it."""
    xp = array_module(height)
    return xp.where(height < threshold, 2.0 - xp.power(2.0, height / threshold), 0.0)


def _pair_floor(floor_height: Any, xp: Any) -> Any:
    """Floor height per frame pair, broadcastable against ``(..., T − 1, 4)``."""
    floor = xp.asarray(floor_height)
    if floor.ndim == 0:
        return floor
    return (0.5 * (floor[..., 1:] + floor[..., :-1]))[..., None]


def skating_per_frame(paws: Any, *, floor_height: Any = 0.0, threshold: float = SKATING_HEIGHT) -> Any:
    """Skating of each paw on each frame pair, metres per frame.

    Args:
      paws: ``(..., T, P, 3)`` paw positions in metres (P = 4 paws, y up).
      floor_height: a scalar or ``(..., T)`` floor / support height per frame, metres.
      threshold: H, metres.

    Returns:
      ``(..., T − 1, P)``: ``v · (2 − 2^(h/H))`` (0 where ``h >= H``), m/frame.
    """
    xp = array_module(paws, floor_height)
    paws = xp.asarray(paws)
    step = paws[..., 1:, :, :] - paws[..., :-1, :, :]
    v = xp.sqrt(step[..., 0] ** 2 + step[..., 2] ** 2)
    h = 0.5 * (paws[..., 1:, :, 1] + paws[..., :-1, :, 1]) - _pair_floor(floor_height, xp)
    return v * skating_weight(h, threshold)


class Skating(NamedTuple):
    """Foot skating averaged over frames (leading batch axes kept).

    Attributes:
      per_paw_cm_per_frame: ``(..., 4)`` in the order of :data:`layout.PAWS`.
      cm_per_frame: ``(...)`` mean over the four paws: the study's "all legs" figure.
      cm_per_second: ``(...)`` the same times the frame rate.
      frames: number of frame pairs averaged (``(...)``).
    """

    per_paw_cm_per_frame: Any
    cm_per_frame: Any
    cm_per_second: Any
    frames: Any


def foot_skating(
    paws: Any,
    *,
    fps: float,
    floor_height: Any = 0.0,
    threshold: float = SKATING_HEIGHT,
    mask: Any = None,
) -> Skating:
    """Mean foot skating over frames, per paw and over all paws.

    Args:
      paws: ``(..., T, 4, 3)`` paw positions, metres.
      fps: frames per second (for cm/s).
      floor_height: a scalar or ``(..., T)`` per-frame floor height, metres.
      threshold: H, metres (2.5 cm).
      mask: optional ``(..., T − 1)`` bool/0-1 weights of the frame pairs to average.

    Returns:
      :class:`Skating` (numpy or jax arrays, as the input).
    """
    xp = array_module(paws, floor_height, mask)
    s = skating_per_frame(paws, floor_height=floor_height, threshold=threshold) * 100.0  # cm/frame
    if mask is None:
        weights = xp.ones(s.shape[:-1], s.dtype)
    else:
        weights = xp.broadcast_to(xp.asarray(mask, s.dtype), s.shape[:-1])
    count = weights.sum(axis=-1)
    per_paw = (s * weights[..., None]).sum(axis=-2) / xp.maximum(count, 1e-12)[..., None]
    mean = per_paw.mean(axis=-1)
    return Skating(per_paw_cm_per_frame=per_paw, cm_per_frame=mean, cm_per_second=mean * fps, frames=count)


def paw_positions(positions: Any) -> Any:
    """``(..., T, 4, 3)`` the paw sites out of ``(..., T, 27, 3)`` MANN-ordered bone positions."""
    return positions[..., list(layout.PAW_INDICES), :]


# ----------------------------------------------------------------------------- ground truth


def motion_paws(motion: Any) -> np.ndarray:
    """``(T, 4, 3)`` FK paw positions of a :class:`mann_jax.data.skeleton.Motion` (metres)."""
    from mann_jax.data.skeleton import forward_kinematics

    return forward_kinematics(motion).positions[:, paw_indices(motion.skeleton)]


def ground_height(paws: Any, *, floor: FloorMode, fps: float, floor_height: float = 0.0,
                  window_seconds: float = 2.0) -> Any:
    """What paw heights are measured above: the floor plane ``floor_height`` (``"floor"``, the
    study's definition) or the per-frame support estimate of ``paws (..., T, 4, 3)`` over
    ``window_seconds`` (``"support"``)."""
    if floor == "floor":
        return float(floor_height)
    if floor == "support":
        return support_height(paws, fps=fps, window_seconds=window_seconds)
    raise ValueError(f"floor must be 'floor' or 'support', got {floor!r}")


def clip_skating(
    motion: Any,
    *,
    floor: FloorMode = "floor",
    floor_height: float = 0.0,
    window_seconds: float = 2.0,
    threshold: float = SKATING_HEIGHT,
) -> Skating:
    """Foot skating of a real clip (forward kinematics of its BVH).

    Args:
      motion: the clip (:func:`mann_jax.data.bvh.load_bvh`).
      floor: ``"floor"`` (height above ``floor_height``, the study's definition) or
        ``"support"`` (above the per-clip support estimate over ``window_seconds``).
      floor_height: the floor plane, metres (``floor="floor"``).
      window_seconds: support window (``floor="support"``).
      threshold: H, metres.
    """
    paws = motion_paws(motion)
    ground = ground_height(paws, floor=floor, fps=motion.fps, floor_height=floor_height,
                           window_seconds=window_seconds)
    return foot_skating(paws, fps=motion.fps, floor_height=ground, threshold=threshold)


class GroundTruthSkating(NamedTuple):
    """Skating of real clips.

    Attributes:
      per_clip: ``{clip: Skating}`` of every clip measured.
      clip_mean_cm_per_frame: mean over clips of each clip's all-paw figure.
      frame_mean_cm_per_frame: mean over every frame pair of every clip (long clips weigh more).
      fps: frame rate of the clips.
      floor: how heights were measured.
    """

    per_clip: dict[str, Skating]
    clip_mean_cm_per_frame: float
    frame_mean_cm_per_frame: float
    fps: float
    floor: str


def ground_truth_skating(
    folder: str | os.PathLike,
    *,
    floor: FloorMode = "floor",
    include_raised_floor: bool = False,
    clips: list[str] | None = None,
    threshold: float = SKATING_HEIGHT,
) -> GroundTruthSkating:
    """Foot skating of the real BVH clips in ``folder`` (by default only the flat-floor ones).

    Args:
      folder: folder of ``*.bvh`` clips (e.g. ``../shared/data/mann_dog_bvh``).
      floor: see :func:`clip_skating`.
      include_raised_floor: also measure the raised-floor clips.
      clips: only these clip names (stems); default all.
      threshold: H, metres.
    """
    from mann_jax.data.bvh import load_bvh

    folder = Path(folder)
    paths = sorted(p for p in folder.glob("*.bvh") if p.is_file())
    if clips is not None:
        wanted = {Path(c).stem for c in clips}
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise ValueError(f"clips not found in {folder}: {sorted(missing)}")
        paths = [p for p in paths if p.stem in wanted]
    if not include_raised_floor:
        paths = [p for p in paths if is_flat_floor_clip(p.stem)]
    if not paths:
        raise ValueError(f"no clips to measure in {folder}")
    per_clip: dict[str, Skating] = {}
    fps = float("nan")
    for p in paths:
        motion = load_bvh(p)
        fps = motion.fps
        per_clip[p.stem] = clip_skating(motion, floor=floor, threshold=threshold)
    values = np.array([float(s.cm_per_frame) for s in per_clip.values()])
    frames = np.array([float(s.frames) for s in per_clip.values()])
    return GroundTruthSkating(
        per_clip=per_clip,
        clip_mean_cm_per_frame=float(values.mean()),
        frame_mean_cm_per_frame=float((values * frames).sum() / frames.sum()),
        fps=fps,
        floor=floor,
    )
