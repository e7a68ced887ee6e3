"""Checks every clip passes before any feature is computed, and resampling to the features' frame rate.

In order (:func:`prepare_clip`, called by :func:`mann_jax.data.dataset.clip_rows`):

1. **Skeleton** (:func:`conform_skeleton`): the clip's points, after the optional joint-name map,
   must be the 27 points of the MANN dog (:data:`mann_jax.data.layout.BONES`) with the dog's
   parents; the error names the missing and extra joints, or the first joint under another parent.
   Another quadruped with the same topology is used through ``data.joint_map`` ({its name: the
   dog's name}); points listed in another depth-first order are put in the dog's.
2. **Plausibility** (:func:`check_motion`), on the frames as recorded: rotations and translations
   finite and unit quaternions; every point within ``max_position`` metres of the origin; the
   Hips moving at most ``max_root_speed`` m/s between two frames (above it: a teleport); every
   point moving at most ``max_joint_speed`` m/s relative to the Hips. The error names the frame
   and, for a BVH clip, the file line of that frame.
3. **Frame rate** (:func:`resample`): a clip not at :data:`FEATURE_FPS` (within
   :data:`FPS_TOLERANCE`) is resampled to it over its own duration: rotations by spherical linear
   interpolation (scipy ``Slerp``), translations (the root's position channels) linearly. Only a
   clip of one frame cannot be resampled.

Every problem raises :class:`MotionDataError` (a folder build reports and skips the clip unless
``data.on_bad_clip='raise'``). The thresholds are ``data.checks.*`` (docs/data_checks.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import ml_collections
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from mann_jax.config_errors import check
from mann_jax.data import layout
from mann_jax.data.errors import MotionDataError
from mann_jax.data.skeleton import Motion, Pose, Skeleton, forward_kinematics

#: The frame rate the features are defined at (trajectory samples 10 frames = 1/6 s apart).
FEATURE_FPS = 60.0
#: Relative frame-rate difference taken as the same rate (the dog files' 0.0166667 s is 59.9999 fps).
FPS_TOLERANCE = 1e-3
_UNIT_TOLERANCE = 1e-3  # |‖q‖ − 1| above it: not a rotation (the parser writes ‖q‖ = 1 to 1e-15)
_LISTED = 8  # joint names listed in an error before "… and N more"


class Limits(NamedTuple):
    """Plausibility thresholds (``data.checks``); the dog data's largest values are in docs/data_checks.md."""

    max_position: float = 1000.0  #: metres from the origin, any point, any frame
    max_root_speed: float = 20.0  #: m/s of the Hips between two consecutive frames
    max_joint_speed: float = 20.0  #: m/s of any point relative to the Hips between two frames


def limits_from(config: ml_collections.ConfigDict) -> Limits:
    """:class:`Limits` from a data config's ``checks`` (defaults where absent), each checked > 0.

    Raises:
      ConfigError: a threshold that is not a positive number, named by its key.
    """
    given = dict(config.get("checks", {}) or {})
    unknown = sorted(set(given) - set(Limits._fields))
    check(not unknown, "data.checks", unknown, f"keys among {list(Limits._fields)}")
    limits = Limits(**{k: given.get(k, getattr(Limits(), k)) for k in Limits._fields})
    for key, value in limits._asdict().items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0
        check(ok, f"data.checks.{key}", value, "a positive number")
    return Limits(*(float(v) for v in limits))


def _parent_text(parent: str | None) -> str:
    return repr(parent) if parent is not None else "nothing (the root)"


def _listing(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def conform_skeleton(motion: Motion, *, joint_map: Mapping[str, str] | None = None,
                     source: Any = None) -> Motion:
    """The clip with its points renamed by ``joint_map`` and put in the dog's order (:data:`layout.BONES`).

    An End Site named after its parent (``<parent>Site``, as the BVH reader names them) follows
    its parent's new name unless the map names it.

    Raises:
      MotionDataError: the points are not the dog's 27 (missing / extra joints named), a joint hangs
        off another parent than in the dog, or the map gives two joints one name.
    """
    skeleton, where = motion.skeleton, source if source is not None else motion.name
    joint_map = dict(joint_map or {})
    names: list[str] = []
    for j, name in enumerate(skeleton.names):
        parent = int(skeleton.parents[j])
        if name in joint_map:
            name = joint_map[name]
        elif skeleton.is_end_site[j] and parent >= 0 and name == skeleton.names[parent] + "Site":
            name = names[parent] + "Site"
        names.append(name)
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise MotionDataError(where, f"data.joint_map gives two joints the name(s) {_listing(twice)}")
    missing = [b for b in layout.BONES if b not in names]
    extra = [n for n in names if n not in layout.BONES]
    if missing or extra:
        parts = ([f"missing {_listing(missing)}"] if missing else []) + ([f"extra {_listing(extra)}"] if extra else [])
        raise MotionDataError(where, f"skeleton is not the MANN dog's: {'; '.join(parts)} (the features need its "
                                     "27 points; another quadruped of the same topology: map its joint names "
                                     "with data.joint_map)")
    for j, name in enumerate(names):
        parent = int(skeleton.parents[j])
        want = layout.BONE_PARENTS[layout.BONES.index(name)]
        has = names[parent] if parent >= 0 else None
        if has != (layout.BONES[want] if want >= 0 else None):
            raise MotionDataError(where, f"skeleton is not the MANN dog's: {name!r} hangs off {_parent_text(has)}, "
                                         f"in the dog off {_parent_text(layout.BONES[want] if want >= 0 else None)}")
    perm = np.array([names.index(b) for b in layout.BONES])
    if names == list(layout.BONES) and tuple(skeleton.names) == layout.BONES:
        return motion
    conformed = Skeleton(names=layout.BONES, parents=np.array(layout.BONE_PARENTS, dtype=np.int64),
                         offsets=skeleton.offsets[perm], is_end_site=skeleton.is_end_site[perm])
    return Motion(name=motion.name, skeleton=conformed, local_rotations=motion.local_rotations[:, perm],
                  local_translations=motion.local_translations[:, perm], frame_time=motion.frame_time,
                  frame_line=motion.frame_line)


def _frame_error(motion: Motion, where: Any, frame: int, problem: str) -> MotionDataError:
    line = None if motion.frame_line is None else motion.frame_line + frame
    return MotionDataError(where, f"frame {frame}: {problem}", line=line)


def check_motion(motion: Motion, limits: Limits = Limits(), *, source: Any = None) -> Pose:
    """Refuses motion outside physical range; returns the clip's forward kinematics.

    ``motion`` must have the dog's skeleton (:func:`conform_skeleton`); frames are the clip's own.

    Raises:
      MotionDataError: naming the first offending frame (and its file line for a BVH clip).
    """
    where = source if source is not None else motion.name
    names = motion.skeleton.names
    for what, values in (("rotation", motion.local_rotations), ("translation", motion.local_translations)):
        bad = ~np.isfinite(values).all(axis=-1)
        if bad.any():
            f, j = np.argwhere(bad)[0]
            raise _frame_error(motion, where, int(f), f"{names[j]!r} has a NaN or infinite {what}")
    norm_error = np.abs(np.linalg.norm(motion.local_rotations, axis=-1) - 1.0)
    if (norm_error > _UNIT_TOLERANCE).any():
        f, j = np.argwhere(norm_error > _UNIT_TOLERANCE)[0]
        raise _frame_error(motion, where, int(f), f"{names[j]!r} has a rotation that is not a unit quaternion "
                                                  f"(norm {1 + norm_error[f, j]:.4g})")
    with np.errstate(over="ignore", invalid="ignore"):
        pose = forward_kinematics(motion)
        distance = np.linalg.norm(pose.positions, axis=-1)
    far = ~(distance <= limits.max_position)  # NaN/inf from overflow counts as far
    if far.any():
        f, j = np.argwhere(far)[0]
        raise _frame_error(motion, where, int(f), f"{names[j]!r} is {distance[f, j]:.3g} m from the origin "
                                                  f"(data.checks.max_position is {limits.max_position:g} m)")
    fps = motion.fps
    hips = pose.positions[:, 0]
    step = np.linalg.norm(np.diff(hips, axis=0), axis=-1)
    fast = step * fps > limits.max_root_speed
    if fast.any():
        f = int(np.argmax(fast)) + 1
        raise _frame_error(motion, where, f, f"the root ('Hips') jumps {step[f - 1]:.3g} m from frame {f - 1} "
                                             f"({step[f - 1] * fps:.3g} m/s; data.checks.max_root_speed is "
                                             f"{limits.max_root_speed:g} m/s): a teleport or a corrupt frame")
    relative = pose.positions - hips[:, None]
    step = np.linalg.norm(np.diff(relative, axis=0), axis=-1)
    fast = step * fps > limits.max_joint_speed
    if fast.any():
        f, j = np.argwhere(fast)[0]
        raise _frame_error(motion, where, int(f) + 1,
                           f"{names[j]!r} moves {step[f, j]:.3g} m relative to the hips from frame {f} "
                           f"({step[f, j] * fps:.3g} m/s; data.checks.max_joint_speed is "
                           f"{limits.max_joint_speed:g} m/s): a corrupt rotation or offset")
    return pose


def needs_resampling(motion: Motion, fps: float = FEATURE_FPS) -> bool:
    """Whether the clip's frame rate differs from ``fps`` by more than :data:`FPS_TOLERANCE` (relative)."""
    return abs(motion.fps / fps - 1.0) > FPS_TOLERANCE


def resample(motion: Motion, fps: float = FEATURE_FPS, *, source: Any = None) -> Motion:
    """The clip at ``fps`` over the same duration: frame ``i`` at time ``i / fps`` (the first frame kept).

    Rotations: spherical linear interpolation per point (scipy ``Slerp``, canonical ``w >= 0``);
    translations linearly. The result has no file lines (``frame_line=None``).

    Raises:
      MotionDataError: a one-frame clip (nothing to interpolate).
    """
    where = source if source is not None else motion.name
    if motion.num_frames < 2:
        raise MotionDataError(where, f"cannot resample a clip of {motion.num_frames} frame to {fps:g} fps")
    duration = (motion.num_frames - 1) * motion.frame_time
    times = np.arange(motion.num_frames) * motion.frame_time
    # A frame time written with 6 digits (0.0333333) ends the clip a hair before its last 60 fps frame: keep it.
    new_times = np.arange(int(np.floor(duration * fps * (1 + 1e-5))) + 1) / fps
    at = np.minimum(new_times, times[-1])
    rotations = np.empty((len(new_times),) + motion.local_rotations.shape[1:])
    for j in range(motion.skeleton.num_points):
        slerp = Slerp(times, Rotation.from_quat(motion.local_rotations[:, j]))
        rotations[:, j] = slerp(at).as_quat(canonical=True)
    position = np.minimum(new_times / motion.frame_time, motion.num_frames - 1)
    below = np.minimum(np.floor(position).astype(np.int64), motion.num_frames - 2)
    w = (position - below)[:, None, None]
    translations = (1.0 - w) * motion.local_translations[below] + w * motion.local_translations[below + 1]
    return Motion(name=motion.name, skeleton=motion.skeleton, local_rotations=rotations,
                  local_translations=translations, frame_time=1.0 / fps)


def source_frames(motion: Motion, num_frames: int, fps: float = FEATURE_FPS) -> np.ndarray:
    """``(num_frames,)`` the clip's own frame nearest to each frame of its resampling to ``fps``
    (to carry per-frame labels over)."""
    return np.clip(np.rint(np.arange(num_frames) / fps / motion.frame_time), 0, motion.num_frames - 1).astype(np.int64)


class PreparedClip(NamedTuple):
    """A clip ready for the features: the dog's skeleton, checked, at :data:`FEATURE_FPS`."""

    motion: Motion  #: the clip at the features' rate (the input itself when nothing changed)
    source_fps: float | None  #: the recorded rate when the clip was resampled, else None
    original: Motion  #: the checked clip at its recorded rate (labels and label files index its frames)
    pose: Pose | None  #: forward kinematics of ``motion`` when the checks computed it (not resampled)


def prepare_clip(motion: Motion, config: ml_collections.ConfigDict, *, source: Any = None) -> PreparedClip:
    """Skeleton check, plausibility checks, then resampling to :data:`FEATURE_FPS` when needed.

    Args:
      motion: the clip as read.
      config: the data config (``joint_map``, ``checks``).
      source: the file, for error messages.
    """
    limits = limits_from(config)
    conformed = conform_skeleton(motion, joint_map=config.get("joint_map", None), source=source)
    pose = check_motion(conformed, limits, source=source)
    if not needs_resampling(conformed):
        return PreparedClip(conformed, None, conformed, pose)
    return PreparedClip(resample(conformed, source=source), conformed.fps, conformed, None)
