"""Paw contacts from paw height and speed.

A paw (the End Site under each hand/foot, order :data:`mann_jax.data.layout.PAWS`) is in contact
with the floor on a frame when BOTH hold:

* its height above the floor is below ``max_height`` (default 4 cm: the paw sites of the dog rest
  1–3 cm above y = 0 when planted), and
* its horizontal speed is below ``max_speed`` (default 0.4 m/s: a planted paw barely moves; a
  swinging paw moves at roughly twice the body speed).

Isolated flickers are removed with a 5-frame majority (median) filter. The result feeds the style
labels (airborne = no paw in contact) and, later, foot-skating evaluation.

Heights are measured above the *support height*: by default the floor plane, or, with
:func:`estimate_support_height`, the lowest paw over a sliding window of a couple of seconds —
which follows raised platforms and step-ups (clips D1_ex03_KAN02_006 and D1_ex04_* of the dog
data) while a jump, far shorter than the window, still reads as airborne.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter, minimum_filter1d

from mann_jax.data.layout import PAWS
from mann_jax.data.skeleton import Skeleton


def paw_indices(skeleton: Skeleton) -> list[int]:
    """Skeleton indices of the four paw sites."""
    return [skeleton.index(p) for p in PAWS]


def horizontal_speed(positions: np.ndarray, fps: float) -> np.ndarray:
    """``(T, ...)`` horizontal speed (m/s) of points ``(T, ..., 3)`` by central differences."""
    velocity = np.gradient(positions, axis=0) * fps
    return np.hypot(velocity[..., 0], velocity[..., 2])


def support_height(paws: np.ndarray, *, fps: float, window_seconds: float = 2.0) -> np.ndarray:
    """``(..., T)`` height of the surface the dog stands on, from paw positions ``(..., T, 4, 3)``.

    The lowest paw's minimum over a sliding window of ``window_seconds``.
    """
    lowest = np.asarray(paws)[..., 1].min(axis=-1)
    size = max(1, int(round(window_seconds * fps)) | 1)
    return minimum_filter1d(lowest, size=size, mode="nearest", axis=-1)


def estimate_support_height(positions: np.ndarray, skeleton: Skeleton, *, fps: float,
                            window_seconds: float) -> np.ndarray:
    """``(T,)`` :func:`support_height` of FK positions ``(T, J, 3)``."""
    return support_height(positions[:, paw_indices(skeleton)], fps=fps, window_seconds=window_seconds)


def detect_contacts(
    positions: np.ndarray,
    skeleton: Skeleton,
    *,
    fps: float,
    floor_height: float | np.ndarray = 0.0,
    max_height: float = 0.04,
    max_speed: float = 0.4,
    filter_frames: int = 5,
) -> np.ndarray:
    """``(T, 4)`` bool: paw contacts of FK positions ``(T, J, 3)`` in metres.

    ``floor_height`` is a scalar or a per-frame ``(T,)`` support height.
    """
    paws = positions[:, paw_indices(skeleton)]
    low = paws[..., 1] - np.reshape(floor_height, (-1, 1)) < max_height
    slow = horizontal_speed(paws, fps) < max_speed
    contacts = low & slow
    if filter_frames > 1 and len(contacts) >= filter_frames:
        contacts = median_filter(contacts.astype(np.uint8), size=(filter_frames, 1), mode="nearest").astype(bool)
    return contacts
