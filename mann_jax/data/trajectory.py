"""The character root: where the dog is on the ground and which way it faces.

Definition (applied identically to mocap, generated clips and rollouts):

* **Ground projection.** The root position is the Hips point projected onto the floor plane
  ``y = floor_height`` (default 0: the dog data and the procedural default put the floor at y = 0;
  clips on raised platforms are the caller's to leave out of floor-based metrics).
* **Facing direction.** The horizontal unit vector ``forward = left × up`` where ``left`` is the
  hip axis ``LeftUpLeg − RightUpLeg``, averaged with the horizontal spine direction
  ``Neck − Hips``. The hip axis stays horizontal when the dog rears up or sits (where the spine
  points up and its horizontal projection degenerates); the spine term keeps the estimate stable
  when the pelvis rolls during a gait.
* **Smoothing.** Gait sway and pelvis roll are removed with a Gaussian filter over time
  (``sigma_frames``, default 6 frames = 0.1 s at 60 fps) on the positions and the facing vectors
  (renormalised afterwards). The trajectory is then C∞-smooth; bones relative to it still carry
  the sway.
* **Velocity and speed.** Velocity is the central difference of the smoothed root position
  (m/s). Speed is the magnitude of the velocity averaged over a centred window of
  ``speed_window`` frames (default 31 ≈ 0.5 s), as a slowly varying scalar control signal.
* **Root-local frame.** z = facing, y = world up, x = y × z (the character's left).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

from mann_jax.data.skeleton import Pose, Skeleton

_UP = np.array([0.0, 1.0, 0.0])


@dataclasses.dataclass(frozen=True)
class Root:
    """Per-frame root of a clip.

    Attributes:
      positions: ``(T, 3)`` on the floor plane.
      directions: ``(T, 3)`` horizontal unit facing vectors.
      velocities: ``(T, 3)`` horizontal, m/s.
      speeds: ``(T,)`` m/s, windowed mean of ``|velocity|``.
    """

    positions: np.ndarray
    directions: np.ndarray
    velocities: np.ndarray
    speeds: np.ndarray


def _horizontal_unit(v: np.ndarray) -> np.ndarray:
    v = v * np.array([1.0, 0.0, 1.0])
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def compute_root(
    pose: Pose,
    skeleton: Skeleton,
    *,
    fps: float,
    floor_height: float = 0.0,
    sigma_frames: float = 6.0,
    speed_window: int = 31,
) -> Root:
    """The smoothed ground-projected root of every frame (see the module docstring)."""
    p = pose.positions
    hips = p[:, skeleton.index("Hips")]
    left = p[:, skeleton.index("LeftUpLeg")] - p[:, skeleton.index("RightUpLeg")]
    from_hips = _horizontal_unit(np.cross(left, _UP))
    from_spine = _horizontal_unit(p[:, skeleton.index("Neck")] - hips)
    facing = from_hips + from_spine
    positions = hips.copy()
    positions[:, 1] = floor_height
    if sigma_frames > 0:
        positions = gaussian_filter1d(positions, sigma_frames, axis=0, mode="nearest")
        facing = gaussian_filter1d(facing, sigma_frames, axis=0, mode="nearest")
    directions = _horizontal_unit(facing)
    velocities = np.gradient(positions, axis=0) * fps
    velocities[:, 1] = 0.0
    speeds = uniform_filter1d(np.linalg.norm(velocities, axis=-1), size=speed_window, mode="nearest")
    return Root(positions=positions, directions=directions, velocities=velocities, speeds=speeds)


def local_axes(directions: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rows = root-local x (left), y (up), z (facing) axes in world space."""
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
    """Signed rotation about +y from one horizontal direction to another, degrees (+ = left)."""
    local = to_local_vectors(to_dirs, from_dirs)
    return np.degrees(np.arctan2(local[..., 0], local[..., 2]))
