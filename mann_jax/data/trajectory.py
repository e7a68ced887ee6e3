"""The character root: where the dog is on the ground, which way it faces, how fast it goes.

The definitions are the original exporter's (AI4Animation SIGGRAPH_2018, ``DataProcessing/Frame.cs``:
``GetBoneTransformation(index, mirrored, smoothing)``, ``GetRootTransformation``,
``GetRootVelocity``, ``GetSpeed``); on the exporter's own rows (``mocap-sample.txt``) every trajectory
column agrees to the 5 decimals the rows were printed with (``python -m experiments.parity``):

* **Smoothing.** A point's position averaged over the frames ``t − s .. t + s`` (clamped to the
  clip) with triangular weights; ``s`` is the editor's ``RootSmoothing``, 5 frames for the dog data
  (an editor setting, not in the public code: fitted on the rows, where it is exact).
* **Position.** The smoothed Hips projected onto the floor plane ``y = floor_height``.
* **Facing.** The horizontal direction from the smoothed Hips to the smoothed Neck.
* **Velocity.** Backward difference of the smoothed Hips times the frame rate, ``y = 0`` (the first
  frame takes the second's).
* **Speed.** Length of the path through the root positions at ``t, t + 0.2 s, …, t + 1 s`` (clamped
  at the clip's end): metres covered in the next second.
* **Root-local frame.** z = facing, y = world up, x = y × z.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mann_jax.data.skeleton import Pose, Skeleton

_UP = np.array([0.0, 1.0, 0.0])
SPEED_SAMPLES = 5  # GetSpeed: root positions every 1/5 s over the next second


@dataclasses.dataclass(frozen=True)
class Root:
    """Per-frame root of a clip.

    Attributes:
      positions: ``(T, 3)`` on the floor plane.
      directions: ``(T, 3)`` horizontal unit facing vectors.
      velocities: ``(T, 3)`` horizontal, m/s.
      speeds: ``(T,)`` metres covered in the next second.
    """

    positions: np.ndarray
    directions: np.ndarray
    velocities: np.ndarray
    speeds: np.ndarray


def _horizontal_unit(v: np.ndarray) -> np.ndarray:
    v = v * np.array([1.0, 0.0, 1.0])
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def smooth_triangular(x: np.ndarray, half_width: int) -> np.ndarray:
    """``x`` ``(T, ...)`` averaged over frames ``t ± half_width`` with triangular weights.

    At the clip's ends the window is clamped and the triangle spans the frames that remain, exactly
    as ``Frame.GetBoneTransformation(index, mirrored, smoothing)`` does.
    """
    if half_width <= 0:
        return np.array(x, dtype=np.float64)
    t = np.arange(len(x))
    lo = np.maximum(t - half_width, 0)
    n = np.minimum(t + half_width, len(x) - 1) - lo + 1
    k = np.arange(2 * half_width + 1)
    w = 2.0 * (k + 1) / (n[:, None] + 1)
    w = np.where(w > 1.0, 2.0 - w, w) * (k < n[:, None])
    frames = np.minimum(lo[:, None] + k, len(x) - 1)
    w = w / w.sum(axis=1, keepdims=True)
    return np.einsum("tk,tk...->t...", w, np.asarray(x, np.float64)[frames])


def compute_root(
    pose: Pose,
    skeleton: Skeleton,
    *,
    fps: float,
    floor_height: float = 0.0,
    smoothing_frames: int = 5,
) -> Root:
    """The root of every frame of a clip (see the module docstring)."""
    p = pose.positions
    hips = smooth_triangular(p[:, skeleton.index("Hips")], smoothing_frames)
    neck = smooth_triangular(p[:, skeleton.index("Neck")], smoothing_frames)
    positions = hips.copy()
    positions[:, 1] = floor_height
    directions = _horizontal_unit(neck - hips)
    velocities = np.zeros_like(hips)
    if len(hips) > 1:
        velocities[1:] = (hips[1:] - hips[:-1]) * fps
        velocities[0] = velocities[1]
    velocities[:, 1] = 0.0
    ahead = np.minimum(np.arange(len(p))[:, None] + future_frames(fps, SPEED_SAMPLES, 1.0)[None], len(p) - 1)
    path = positions[np.concatenate([np.arange(len(p))[:, None], ahead], axis=1)]
    speeds = np.linalg.norm(np.diff(path, axis=1), axis=-1).sum(axis=1)
    return Root(positions=positions, directions=directions, velocities=velocities, speeds=speeds)


def future_frames(fps: float, count: int, seconds: float) -> np.ndarray:
    """Frame offsets of ``count`` samples evenly spaced over the next ``seconds`` (nearest frame)."""
    return np.rint(np.arange(1, count + 1) * seconds / count * fps).astype(int)


def local_axes(directions: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rows = root-local x, y (up), z (facing) axes in world space; x = y × z."""
    z = directions
    x = np.stack([z[..., 2], np.zeros_like(z[..., 0]), -z[..., 0]], axis=-1)  # y × z
    y = np.broadcast_to(_UP, z.shape)
    return np.stack([x, y, z], axis=-2)


def to_local_vectors(vectors: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Express world vectors ``(..., 3)`` in root-local coordinates (rotation only)."""
    return np.einsum("...ij,...j->...i", local_axes(directions), vectors)


def to_local_points(points: np.ndarray, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Express world points ``(..., 3)`` in root-local coordinates (translation and rotation)."""
    return to_local_vectors(points - origins, directions)


def signed_angle_degrees(from_dirs: np.ndarray, to_dirs: np.ndarray) -> np.ndarray:
    """Signed rotation about +y from one horizontal direction to another, degrees (+ toward local +x)."""
    local = to_local_vectors(to_dirs, from_dirs)
    return np.degrees(np.arctan2(local[..., 0], local[..., 2]))
