"""MANN input/output feature vectors of a clip, in exactly the original column layout.

Row ``i`` of a clip is centred on frame ``t`` (see :mod:`mann_jax.data.layout` for the columns):

* input: the trajectory around ``t`` relative to root(t), and the bones of frame ``t − 1``
  relative to root(t − 1);
* output: the future trajectory of frame ``t + 1`` relative to root(t + 1), the bones of frame
  ``t`` relative to root(t), and the root update root(t) → root(t + 1) times the frame rate.

So the predicted bones of row ``t`` are the input bones of row ``t + 1`` — the property the
original data has (the pretrained weights are checked against it). Bone velocities are backward
differences ``(p(t) − p(t−1))·fps`` rotated into the root frame; everything is in metres, m/s and
degrees/s. Valid centre frames need 60 frames of past and 51 of future, so a clip needs at least
:data:`MIN_CLIP_FRAMES` frames.

Everything is vectorised over frames (gathers with index arrays, no loop per frame).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mann_jax.data import layout
from mann_jax.data.skeleton import Pose
from mann_jax.data.trajectory import Root, signed_angle_degrees, to_local_points, to_local_vectors

MIN_CLIP_FRAMES = layout.PAST_FRAMES + layout.FUTURE_FRAMES + 2  # 112: one row


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
    offsets = np.array([layout.TRAJECTORY_STEP * (k - layout.CURRENT_SAMPLE) for k in samples])
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


def _bones(pose: Pose, root: Root, frames: np.ndarray, fps: float) -> np.ndarray:
    """``(N, 27·12)`` bone blocks of ``frames`` relative to the root at the same frames."""
    p = pose.positions
    velocity = np.empty_like(p)
    velocity[1:] = (p[1:] - p[:-1]) * fps
    velocity[0] = velocity[1] if len(p) > 1 else 0.0
    origin = root.positions[frames][:, None]
    facing = np.broadcast_to(root.directions[frames][:, None], p[frames].shape)
    block = np.concatenate(
        [
            to_local_points(p[frames], origin, facing),
            to_local_vectors(pose.forward[frames], facing),
            to_local_vectors(pose.up[frames], facing),
            to_local_vectors(velocity[frames], facing),
        ],
        axis=-1,
    )
    return block.reshape(len(frames), -1)


def clip_features(pose: Pose, root: Root, styles: np.ndarray, *, fps: float) -> ClipFeatures:
    """Input and output rows for every valid centre frame of a clip.

    Args:
      pose: forward kinematics of the clip (27 points, metres).
      root: :func:`mann_jax.data.trajectory.compute_root` of the same clip.
      styles: ``(T, 6)`` soft style values.
      fps: frames per second.
    """
    t = valid_frames(len(pose.positions))
    n_samples = layout.NUM_TRAJECTORY_SAMPLES
    x_traj = _trajectory(root, styles, t, range(n_samples)).reshape(len(t), -1)
    x_bones = _bones(pose, root, t - 1, fps)
    y_traj = _trajectory(root, None, t + 1, range(layout.CURRENT_SAMPLE, n_samples)).reshape(len(t), -1)
    y_bones = _bones(pose, root, t, fps)
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
