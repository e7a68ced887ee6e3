"""Skeletons, motions and vectorised forward kinematics.

Conventions used by the whole data pipeline:

* World frame: right-handed, **Y up**, lengths in **metres** (BVH centimetres are scaled once, at
  load time, by :func:`mann_jax.data.bvh.load_bvh`).
* A skeleton lists its *points* in BVH depth-first order, End Sites included, because the MANN
  bone order counts them (27 points for the dog: 21 rotating joints + 6 End Sites).
* A :class:`Motion` stores, per frame, every point's local rotation (a unit quaternion, scalar
  last as scipy uses) and local translation (the BVH OFFSET, or the position channels where a
  joint has them — the root does).
* A :class:`Pose` is the result of forward kinematics: world positions ``(T, J, 3)`` and world
  rotation matrices ``(T, J, 3, 3)``. A bone's *forward* axis is its rotation applied to local +Z
  and its *up* axis the rotation applied to local +Y (the MANN/Unity convention).

Forward kinematics loops over the 27 points (parents before children) and is vectorised over all
frames; the Euler-to-rotation conversion uses ``scipy.spatial.transform.Rotation``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """A kinematic tree in depth-first order (parents precede children).

    Attributes:
      names: point names; End Sites are named ``<parent>Site`` (e.g. ``HeadSite``).
      parents: index of each point's parent, -1 for the root.
      offsets: ``(J, 3)`` rest offsets from the parent, in metres.
      is_end_site: ``(J,)`` True for End Sites (no channels, identity rotation).
    """

    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    is_end_site: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.parents.shape != (n,) or self.offsets.shape != (n, 3) or self.is_end_site.shape != (n,):
            raise ValueError("skeleton arrays must have one entry per point")
        for j, p in enumerate(self.parents):
            if p >= j or (p < 0 and j != 0):
                raise ValueError(f"point {self.names[j]!r}: parent {p} must precede it (depth-first order)")

    @property
    def num_points(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of a named point; a clear KeyError listing the names otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no point named {name!r} in skeleton {list(self.names)}") from None

    def mirror_permutation(self) -> np.ndarray:
        """Index map swapping every ``Left*`` point with its ``Right*`` twin (others map to themselves)."""
        perm = np.arange(self.num_points)
        for j, name in enumerate(self.names):
            for a, b in (("Left", "Right"), ("Right", "Left")):
                if name.startswith(a):
                    perm[j] = self.index(b + name[len(a):])
        return perm


@dataclasses.dataclass(frozen=True)
class Motion:
    """A clip: a skeleton and per-frame local transforms.

    Attributes:
      name: clip name (the file stem for BVH clips).
      skeleton: the kinematic tree.
      local_rotations: ``(T, J, 4)`` unit quaternions ``(x, y, z, w)``.
      local_translations: ``(T, J, 3)`` metres; the offset for points without position channels.
      frame_time: seconds per frame (1/60 for the dog data).
      frame_line: 1-based line of frame 0 in the BVH file the clip was read from (frame ``f`` is on
        line ``frame_line + f``), so checks can name the line; None for clips made otherwise.
    """

    name: str
    skeleton: Skeleton
    local_rotations: np.ndarray
    local_translations: np.ndarray
    frame_time: float
    frame_line: int | None = None

    @property
    def num_frames(self) -> int:
        return self.local_rotations.shape[0]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


@dataclasses.dataclass(frozen=True)
class Pose:
    """World-space result of forward kinematics.

    Attributes:
      positions: ``(T, J, 3)`` metres.
      rotations: ``(T, J, 3, 3)`` rotation matrices (columns are the local axes in world space).
    """

    positions: np.ndarray
    rotations: np.ndarray

    @property
    def forward(self) -> np.ndarray:
        """``(T, J, 3)`` each point's local +Z axis in world space."""
        return self.rotations[..., :, 2]

    @property
    def up(self) -> np.ndarray:
        """``(T, J, 3)`` each point's local +Y axis in world space."""
        return self.rotations[..., :, 1]


def forward_kinematics(motion: Motion) -> Pose:
    """World positions and rotations of every point for every frame (vectorised over frames)."""
    t, j = motion.local_rotations.shape[:2]
    local = Rotation.from_quat(motion.local_rotations.reshape(-1, 4)).as_matrix().reshape(t, j, 3, 3)
    rotations = np.empty_like(local)
    positions = np.empty((t, j, 3), dtype=np.float64)
    for k, p in enumerate(motion.skeleton.parents):
        if p < 0:
            rotations[:, k] = local[:, k]
            positions[:, k] = motion.local_translations[:, k]
        else:
            rotations[:, k] = rotations[:, p] @ local[:, k]
            offset = np.einsum("tab,tb->ta", rotations[:, p], motion.local_translations[:, k])
            positions[:, k] = positions[:, p] + offset
    return Pose(positions=positions, rotations=rotations)


# Reflection of the world across the YZ plane (x -> -x).
_MIRROR = np.diag([-1.0, 1.0, 1.0])


def mirror_pose(pose: Pose, skeleton: Skeleton) -> Pose:
    """Left/right mirror of a pose: reflect the world x axis and swap Left*/Right* points.

    Rotations are conjugated by the reflection (``M R M``) so they stay proper rotations; the
    forward (+Z) and up (+Y) axes of a point are then exactly the reflected axes of its twin.
    Mirroring twice is the identity.
    """
    perm = skeleton.mirror_permutation()
    positions = pose.positions[:, perm] @ _MIRROR
    rotations = _MIRROR @ pose.rotations[:, perm] @ _MIRROR
    return Pose(positions=positions, rotations=rotations)
