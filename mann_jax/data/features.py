"""MANN input/output feature vectors of a clip, in exactly the original exporter's column layout.

Follows AI4Animation SIGGRAPH_2018 ``DataProcessing/MotionExporter.cs``, which writes row ``j``
from the MotionEditor states of frames ``j − 1, j, j + 1`` (the root is
:mod:`mann_jax.data.trajectory`, the columns :mod:`mann_jax.data.layout`). Row ``i`` of a clip is
centred on frame ``t``:

* input: the 12 trajectory samples around ``t`` (:data:`layout.SAMPLE_OFFSETS`) relative to
  root(t); the bones of frame ``t − 1`` relative to root(t − 1) (the exporter's "current posture
  relative to the previous root": the editor's posture lags its root by one frame);
* output: the future trajectory of frame ``t + 1`` relative to root(t + 1), the bones of frame
  ``t`` relative to root(t), and the root update root(t) → root(t + 1) times the frame rate.

A bone's forward/up are its +Z/+Y axes after :data:`layout.AXIS_CORRECTIONS`; its velocity is the
backward difference ``(p(t) − p(t − 1))·fps`` (``Frame.GetBoneVelocity``). So the predicted bones
of row ``t`` are the input bones of row ``t + 1``. Everything is in metres, m/s and degrees/s.
Valid centre frames need 60 frames of past and 61 of future, so a clip needs at least
:data:`MIN_CLIP_FRAMES` frames; the exporter also wrote rows nearer the clip ends by reflecting the
trajectory, which the project leaves out.

Vectorised over frames (gathers with index arrays, no loop per frame).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation

from mann_jax.data import layout
from mann_jax.data.skeleton import Pose, Skeleton
from mann_jax.data.trajectory import Root, signed_angle_degrees, to_local_points, to_local_vectors

MIN_CLIP_FRAMES = layout.PAST_FRAMES + layout.FUTURE_FRAMES + 2  # 122: one row


@dataclasses.dataclass(frozen=True)
class ClipFeatures:
    """Feature rows of one clip.

    Attributes:
      inputs: ``(N, 480)`` float32.
      outputs: ``(N, 363)`` float32.
      frames: ``(N,)`` the centre frame ``t`` of each row.
    """

    inputs: np.ndarray
    outputs: np.ndarray
    frames: np.ndarray


def valid_frames(num_frames: int) -> np.ndarray:
    """Centre frames that have the whole trajectory window inside the clip."""
    return np.arange(layout.PAST_FRAMES, num_frames - layout.FUTURE_FRAMES - 1)


def _trajectory(root: Root, styles: np.ndarray | None, centres: np.ndarray, samples: range) -> np.ndarray:
    """``(N, len(samples), 6 or 13)`` trajectory samples around ``centres`` relative to their root."""
    offsets = np.array([layout.SAMPLE_OFFSETS[k] for k in samples])
    at = centres[:, None] + offsets[None, :]
    origin = root.positions[centres][:, None]
    facing = np.broadcast_to(root.directions[centres][:, None], at.shape + (3,))
    pos = to_local_points(root.positions[at], origin, facing)
    direction = to_local_vectors(root.directions[at], facing)
    vel = to_local_vectors(root.velocities[at], facing)
    xz = [0, 2]
    parts = [pos[..., xz], direction[..., xz], vel[..., xz]]
    if styles is not None:
        parts += [root.speeds[at][..., None], styles[at]]
    return np.concatenate(parts, axis=-1)


# Mirroring reflects the world in x and, as the original's mirror mode does, the bone's own z axis
# too: a mirrored bone's corrected axes are its conjugated rotation times ``_REFLECT_X C _REFLECT_Z``.
_REFLECT_X, _REFLECT_Z = np.diag([-1.0, 1.0, 1.0]), np.diag([1.0, 1.0, -1.0])


def bone_axes(pose: Pose, skeleton: Skeleton, *, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(T, J, 3)`` forward and up axes of every point, as the original exporter reads them.

    Each point's rotation is followed by its constant :data:`layout.AXIS_CORRECTIONS`. For a
    mirrored pose (:func:`mann_jax.data.skeleton.mirror_pose`) the axes are those of the original's
    mirror mode (``World[Symmetry[i]].GetMirror(axis)``), which reverses the mirror image's forward
    axis: the Hips forward then keeps its root-local x sign in mirrored rows, as the original's
    ``Xmean`` shows (inferred from the statistics; the mirror extension's code is not public).
    """
    correction = np.broadcast_to(np.eye(3), (skeleton.num_points, 3, 3)).copy()
    for name, degrees in layout.AXIS_CORRECTIONS.items():
        if name in skeleton.names:
            correction[skeleton.index(name)] = Rotation.from_euler("x", degrees, degrees=True).as_matrix()
    if mirrored:
        correction = _REFLECT_X @ correction[skeleton.mirror_permutation()] @ _REFLECT_Z
    axes = pose.rotations @ correction
    return axes[..., :, 2], axes[..., :, 1]


def _bones(pose: Pose, axes: tuple[np.ndarray, np.ndarray], root: Root, frames: np.ndarray, fps: float) -> np.ndarray:
    """``(N, 27·12)`` bone blocks of ``frames`` relative to the root at the same frames."""
    p = pose.positions
    forward, up = axes
    velocity = np.empty_like(p)
    velocity[1:] = (p[1:] - p[:-1]) * fps
    velocity[0] = velocity[1] if len(p) > 1 else 0.0
    origin = root.positions[frames][:, None]
    facing = np.broadcast_to(root.directions[frames][:, None], p[frames].shape)
    block = np.concatenate(
        [
            to_local_points(p[frames], origin, facing),
            to_local_vectors(forward[frames], facing),
            to_local_vectors(up[frames], facing),
            to_local_vectors(velocity[frames], facing),
        ],
        axis=-1,
    )
    return block.reshape(len(frames), -1)


def clip_features(pose: Pose, skeleton: Skeleton, root: Root, styles: np.ndarray, *, fps: float,
                  mirrored: bool = False) -> ClipFeatures:
    """Input and output rows for every valid centre frame of a clip.

    Args:
      pose: forward kinematics of the clip (27 points, metres).
      skeleton: the clip's skeleton (names the bones that carry axis corrections).
      root: :func:`mann_jax.data.trajectory.compute_root` of the same clip.
      styles: ``(T, 6)`` soft style values.
      fps: frames per second.
      mirrored: ``pose`` is :func:`mann_jax.data.skeleton.mirror_pose` of the clip (see :func:`bone_axes`).
    """
    t = valid_frames(len(pose.positions))
    n_samples = layout.NUM_TRAJECTORY_SAMPLES
    x_traj = _trajectory(root, styles, t, range(n_samples)).reshape(len(t), -1)
    axes = bone_axes(pose, skeleton, mirrored=mirrored)
    x_bones = _bones(pose, axes, root, t - 1, fps)
    y_traj = _trajectory(root, None, t + 1, range(layout.CURRENT_SAMPLE, n_samples)).reshape(len(t), -1)
    y_bones = _bones(pose, axes, root, t, fps)
    step = to_local_points(root.positions[t + 1], root.positions[t], root.directions[t])
    turn = signed_angle_degrees(root.directions[t], root.directions[t + 1])
    y_root = np.stack([step[:, 0] * fps, turn * fps, step[:, 2] * fps], axis=-1)
    inputs = np.concatenate([x_traj, x_bones], axis=1).astype(np.float32)
    outputs = np.concatenate([y_traj, y_bones, y_root], axis=1).astype(np.float32)
    assert inputs.shape[1] == layout.INPUT_DIM and outputs.shape[1] == layout.OUTPUT_DIM
    return ClipFeatures(inputs=inputs, outputs=outputs, frames=t)


_MIRROR_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def mirror_features(rows: np.ndarray, kind: str) -> np.ndarray:
    """Left/right mirror of input (``kind="input"``) or output (``"output"``) rows.

    Equal to the features of the mirrored motion (:func:`mann_jax.data.skeleton.mirror_pose`);
    applying it twice is the identity.
    """
    if kind not in _MIRROR_CACHE:
        _MIRROR_CACHE[kind] = layout.mirror_signs_and_permutation(kind)
    signs, perm = _MIRROR_CACHE[kind]
    return (rows * signs.astype(rows.dtype))[..., perm]
