"""Style labels (Idle, Move, Jump, Sit, Stand, Lie) derived from the motion, or read from a file.

The original pipeline labelled the dog clips by hand in Unity; the shared clips carry no labels,
so this module derives them, reproducibly, from quantities any reader can check:

* ``hips``   — Hips height above the floor, as a fraction of the hind-leg length ``L`` (sum of the
  hind-leg bone lengths of the skeleton: 0.45 m for the dog; standing hips ≈ 0.9 L);
* ``pitch``  — elevation of the spine (Hips → Neck) above the horizontal, degrees;
* ``front``  — height of the higher front paw above the floor, fraction of ``L``;
* ``speed``  — the root speed (m/s, windowed; see :mod:`mann_jax.data.trajectory`);
* ``airborne`` — no paw in contact (:mod:`mann_jax.data.contacts`).

The rule, first match wins (thresholds are the fields of :class:`StyleRules`):

1. **Jump**  — inside or within ``jump_margin`` frames of an airborne run of ≥ ``min_airborne``
   frames;
2. **Stand** — reared up on the hind legs: ``pitch > stand_pitch`` and ``front > stand_front``;
3. **Lie**   — ``hips < lie_hips`` and ``pitch < lie_pitch``;
4. **Sit**   — ``hips < sit_hips`` and ``pitch > sit_pitch``;
5. **Move**  — ``speed > move_speed``;
6. **Idle**  — everything else.

The frame labels are then smoothed in time by a majority vote over ``majority_frames`` and turned
into the six soft style values of the MANN input: the one-hot labels blurred with a Gaussian of
``blend_sigma_frames`` (so transitions blend over ≈ 0.3 s, as hand-made blends did) and
renormalised to sum to 1.

A per-clip label file overrides the automatic labels on the ranges it lists (plain text, one range
per line, ``START END STYLE`` with 0-based frames, END exclusive, ``#`` comments)::

    # D1_001_KAN01_001.txt
    0    240  Idle
    240  900  Move
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

from mann_jax.data.errors import MotionDataError
from mann_jax.data.layout import NUM_STYLES, STYLES
from mann_jax.data.skeleton import Pose, Skeleton

IDLE, MOVE, JUMP, SIT, STAND, LIE = range(NUM_STYLES)


@dataclasses.dataclass(frozen=True)
class StyleRules:
    """Thresholds of the labelling rule (see the module docstring)."""

    move_speed: float = 0.25
    min_airborne: int = 4
    jump_margin: int = 12
    stand_pitch: float = 45.0
    stand_front: float = 0.35
    lie_hips: float = 0.45
    lie_pitch: float = 25.0
    sit_hips: float = 0.75
    sit_pitch: float = 25.0
    majority_frames: int = 15
    blend_sigma_frames: float = 6.0


def hind_leg_length(skeleton: Skeleton) -> float:
    """Sum of the hind-leg bone lengths (LeftUpLeg → LeftFootSite), metres."""
    j = skeleton.index("LeftFootSite")
    top = skeleton.index("LeftUpLeg")
    length = 0.0
    while j != top:
        length += float(np.linalg.norm(skeleton.offsets[j]))
        j = int(skeleton.parents[j])
    return length


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def label_frames(
    pose: Pose,
    skeleton: Skeleton,
    *,
    speeds: np.ndarray,
    contacts: np.ndarray,
    floor_height: float | np.ndarray = 0.0,
    rules: StyleRules = StyleRules(),
) -> np.ndarray:
    """``(T,)`` int style index per frame, before temporal smoothing.

    ``floor_height`` is a scalar or a per-frame ``(T,)`` support height
    (:func:`mann_jax.data.contacts.estimate_support_height`).
    """
    p = pose.positions
    leg = hind_leg_length(skeleton)
    hips_pos = p[:, skeleton.index("Hips")]
    spine = p[:, skeleton.index("Neck")] - hips_pos
    hips = (hips_pos[:, 1] - floor_height) / leg
    pitch = np.degrees(np.arctan2(spine[:, 1], np.hypot(spine[:, 0], spine[:, 2])))
    front_y = np.maximum(p[:, skeleton.index("LeftHandSite"), 1], p[:, skeleton.index("RightHandSite"), 1])
    front = (front_y - floor_height) / leg

    labels = np.full(len(p), IDLE, dtype=np.int64)
    labels[speeds > rules.move_speed] = MOVE
    labels[(hips < rules.sit_hips) & (pitch > rules.sit_pitch)] = SIT
    labels[(hips < rules.lie_hips) & (pitch < rules.lie_pitch)] = LIE
    labels[(pitch > rules.stand_pitch) & (front > rules.stand_front)] = STAND
    airborne = ~np.any(contacts, axis=1)  # (numpy types ndarray.any(axis=...) as np.bool | ndarray)
    for start, stop in _runs(airborne):
        if stop - start >= rules.min_airborne:
            labels[max(0, start - rules.jump_margin):stop + rules.jump_margin] = JUMP
    return labels


def majority_smooth(labels: np.ndarray, frames: int) -> np.ndarray:
    """Replace each label by the most frequent one in a centred window of ``frames``."""
    if frames <= 1:
        return labels
    votes = uniform_filter1d(np.eye(NUM_STYLES)[labels], size=frames, axis=0, mode="nearest")
    return np.argmax(votes, axis=1)


def soft_styles(labels: np.ndarray, sigma_frames: float) -> np.ndarray:
    """``(T, 6)`` float32 style values: blurred one-hot labels that sum to 1."""
    onehot = np.eye(NUM_STYLES)[labels]
    if sigma_frames > 0:
        onehot = gaussian_filter1d(onehot, sigma_frames, axis=0, mode="nearest")
    return (onehot / onehot.sum(axis=1, keepdims=True)).astype(np.float32)


def read_label_file(path: str | os.PathLike, num_frames: int) -> list[tuple[int, int, int]]:
    """Parse a label file into ``(start, stop, style)`` ranges, with errors naming the line."""
    ranges = []
    text = Path(path).read_text()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise MotionDataError(path, f"expected 'START END STYLE', got {raw.strip()!r}", line=lineno)
        try:
            start, stop = int(parts[0]), int(parts[1])
        except ValueError:
            raise MotionDataError(path, f"START and END must be integers, got {raw.strip()!r}", line=lineno) from None
        if parts[2] not in STYLES:
            raise MotionDataError(path, f"unknown style {parts[2]!r}; expected one of {', '.join(STYLES)}", line=lineno)
        if not 0 <= start < stop <= num_frames:
            raise MotionDataError(
                path, f"range {start}..{stop} is empty or outside the clip's {num_frames} frames", line=lineno)
        ranges.append((start, stop, STYLES.index(parts[2])))
    return ranges


def apply_label_file(labels: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Labels with the ranges of a label file written over them."""
    labels = labels.copy()
    for start, stop, style in read_label_file(path, len(labels)):
        labels[start:stop] = style
    return labels


def style_counts(labels: np.ndarray) -> dict[str, int]:
    """Frames per style, by name."""
    counts = np.bincount(labels, minlength=NUM_STYLES)
    return {name: int(c) for name, c in zip(STYLES, counts)}
