"""A procedural quadruped on the 27-point dog skeleton: the project's embedded default dataset.

This is a **fixture and a demo, not motion capture**. It lets the whole pipeline (features, style
labels, contacts, foot-skating metrics, training) run on a fresh machine with no download. The
motion is physically sensible but schematic: nobody should read results on it as results about
dogs.

How a clip is made (everything is deterministic from the seed and vectorised over frames):

1. **Plan.** A clip is a list of :class:`Segment` (activity, duration, heading change, speed).
   :func:`random_plan` strings together stationary blocks (idle, sit, lie, jump) and locomotion
   bouts (walk, trot, canter, possibly changing gait, with gradual or abrupt 90°/180° turns),
   always with a short idle between locomotion and a stationary pose.
2. **Root path.** Per-frame targets (speed, yaw rate, body height, pitch, paw home positions, …)
   are piecewise constant per segment and smoothed with a Hann window, so every change is a C2
   ramp of fixed length (1 s for speed, 1.2 s for the pose) centred on the segment boundary. The
   heading is the integral of the (bounded) yaw rate and the path the integral of speed along the
   heading, so the dog faces where it goes; the Hips follow the path (shifted back when sitting
   or lying down), at a per-activity height with gait bobbing.
3. **Gait.** A global gait phase advances at the stride frequency; each paw has a phase offset
   (walk: lateral sequence, trot: diagonal pairs, canter: three-beat) and a duty factor, giving
   its stance/swing pattern. Outside locomotion all paws stand; when the dog stops each paw
   finishes its swing and when it starts each paw waits for its natural lift-off. Sitting down
   the front paws take one step back; a jump lifts all paws for a ballistic flight.
4. **Footholds.** Each stance interval plants its paw, at y = 0, where the paw's home position
   (a point fixed to the walking body) is at the middle of that stance; swings move the paw from
   one foothold to the next along a minimum-jerk curve lifted by a few centimetres.
5. **Pose.** Spine, neck, head and tail get angles from the activity plus small secondary motion
   (breathing, head noise, tail wag, bending into turns). Each leg is solved with analytic IK: the
   scapula turns partly towards the paw, the last segment (metacarpus / metatarsus) takes a
   preferred direction — turned only as needed to keep the wrist / hock above the floor and the
   chain above it neither overstretched nor folded flat — then a 2-bone IK (elbow bends back,
   stifle forward) places the wrist / hock exactly. World bone frames (bone along its child
   offset; local +Z towards the dog's left for spine, tail and scapulae, along the elbow / stifle
   hinge axis for the legs, which is the left in a standing pose, as in the real clips; the head's
   +Y to its left) become local quaternions. Forward kinematics of the result reproduces the
   planted paws to round-off.

The result is a :class:`~mann_jax.data.skeleton.Motion` in the conventions of a BVH clip loaded in
metres: Y up, floor at y = 0, 60 fps, quaternions ``(x, y, z, w)``, local translations equal to
the offsets except the root's (its world position). Paw sites sit exactly on y = 0 while planted
(the real clips have them 1–3 cm above the floor).

Ground truth comes with every clip: the activity per frame, the MANN style per frame
(Idle, Move, Jump, Sit, Lie — **Stand**, rearing on the hind legs, is not generated) and the paw
contacts. Known simplifications: a flat floor; no physics (no balance or momentum beyond the
planned path and a ballistic jump); no rearing (Stand), gallop, turning on the spot, backing up or
lateral steps; legs move near their sagittal planes; the stride frequency rises in sharp turns to
keep steps within reach; gait suspensions are capped at 0.05 s.

Command line: ``python -m mann_jax.data.synthetic --out DIR`` writes the default clips as BVH
files (when :func:`mann_jax.data.bvh.save_bvh` is available).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.ndimage import convolve1d, gaussian_filter1d
from scipy.spatial.transform import Rotation

from mann_jax.data import layout
from mann_jax.data.skeleton import Motion, Skeleton

# ---------------------------------------------------------------------------------------------
# Skeleton
# ---------------------------------------------------------------------------------------------

# (name, parent, offset in BVH centimetres): the hierarchy of the MANN dog clips
# (AI4Animation MotionCapture, e.g. D1_001_KAN01_001.bvh), End Sites named ``<parent>Site``.
_DOG_HIERARCHY: tuple[tuple[str, int, tuple[float, float, float]], ...] = (
    ("Hips", -1, (0.0, 0.0, 0.0)),
    ("Spine", 0, (0.0, 0.0, 0.0)),
    ("Spine1", 1, (19.0, 0.0, 0.0)),
    ("Neck", 2, (22.5, 0.6, 0.0)),
    ("Head", 3, (14.0, 0.0308777, 0.0)),
    ("HeadSite", 4, (17.0, 0.0, 0.0)),
    ("LeftShoulder", 2, (19.8, 3.7, 4.3)),
    ("LeftArm", 6, (8.0, 0.0, 0.0)),
    ("LeftForeArm", 7, (15.2, 0.0, 0.0)),
    ("LeftHand", 8, (17.8, 0.0, 0.0)),
    ("LeftHandSite", 9, (7.2, 0.0, 0.0)),
    ("RightShoulder", 2, (19.8, 3.7, -4.3)),
    ("RightArm", 11, (8.0, 0.0, 0.151654)),
    ("RightForeArm", 12, (15.2, 0.0, 0.0)),
    ("RightHand", 13, (17.8, 0.0, 0.0)),
    ("RightHandSite", 14, (7.2, 0.0, 0.0)),
    ("LeftUpLeg", 0, (5.98425, -7.666, 4.78879)),
    ("LeftLeg", 16, (16.0, 0.0, 0.0)),
    ("LeftFoot", 17, (18.0, 0.0, 0.0)),
    ("LeftFootSite", 18, (0.0, -10.8, 0.0)),
    ("RightUpLeg", 0, (5.98425, -7.66598, -4.78879)),
    ("RightLeg", 20, (16.0, 0.0, 0.0)),
    ("RightFoot", 21, (18.0, 0.0, 0.0)),
    ("RightFootSite", 22, (0.0, -10.8, 0.0)),
    ("Tail", 0, (6.83696, -0.722574, 0.0)),
    ("Tail1", 24, (12.0, 0.0, 0.0)),
    ("Tail1Site", 25, (12.0, 0.0, 0.0)),
)


def dog_skeleton() -> Skeleton:
    """The 27-point MANN dog skeleton (21 joints + 6 End Sites, depth-first), offsets in metres.

    The root offset is zero here (a BVH root's OFFSET is overridden by its position channels).
    """
    names = tuple(n for n, _, _ in _DOG_HIERARCHY)
    return Skeleton(
        names=names,
        parents=np.array([p for _, p, _ in _DOG_HIERARCHY], dtype=np.int64),
        offsets=np.array([o for _, _, o in _DOG_HIERARCHY], dtype=np.float64) * 0.01,
        is_end_site=np.array([n.endswith("Site") for n in names]),
    )


# ---------------------------------------------------------------------------------------------
# Activities, gaits, styles
# ---------------------------------------------------------------------------------------------

ACTIVITIES: tuple[str, ...] = ("idle", "walk", "trot", "canter", "sit", "lie", "jump")
"""Activities a :class:`Segment` can name (index = value of :attr:`SyntheticClip.activities`)."""

MOVING_ACTIVITIES: tuple[str, ...] = ("walk", "trot", "canter")

STYLE_NAMES: tuple[str, ...] = layout.STYLES
"""The MANN style order; ``Stand`` (rearing up) is never generated."""

ACTIVITY_STYLE: dict[str, int] = {"idle": 0, "walk": 1, "trot": 1, "canter": 1, "jump": 2, "sit": 3, "lie": 5}

PAW_NAMES: tuple[str, ...] = layout.PAWS
"""Paw order of :attr:`SyntheticClip.contacts` (front left, front right, hind left, hind right)."""

MAX_YAW_RATE: float = 4.0
"""Upper bound of the heading's turning rate, rad/s (≈ 230 °/s)."""

TURN_KINDS: tuple[str, ...] = ("gradual", "abrupt90", "abrupt180")
"""Turns :func:`random_plan` uses: 90° over ≈ 3 s; 90° in ≈ 1 s (walk) / 0.7 s (trot); 180° in
≈ 1.5 s (walk) / 1.1 s (trot)."""


@dataclasses.dataclass(frozen=True)
class Gait:
    """A quadruped gait (the stance/swing pattern of the four paws).

    Attributes:
      name: ``walk``, ``trot`` or ``canter``.
      speed: nominal speed, m/s.
      speed_range: range random plans draw speeds from, m/s.
      frequency: stride frequency at the nominal speed, Hz (scales with ``sqrt(speed)``).
      duty: fraction of the stride a paw is on the ground.
      offsets: touch-down phase of each paw, paw order :data:`PAW_NAMES`, in strides.
      lift: swing height of the paws, metres.
      bob: vertical body oscillation amplitude, metres (twice per stride; once for canter).
      height: Hips height, metres.
    """

    name: str
    speed: float
    speed_range: tuple[float, float]
    frequency: float
    duty: float
    offsets: tuple[float, float, float, float]
    lift: float
    bob: float
    height: float


GAITS: dict[str, Gait] = {
    # Lateral-sequence walk: left hind, left fore, right hind, right fore, a quarter stride apart.
    "walk": Gait("walk", 0.8, (0.6, 1.0), 1.9, 0.62, (0.25, 0.75, 0.0, 0.5), 0.06, 0.006, 0.44),
    # Trot: diagonal pairs (left fore + right hind, right fore + left hind).
    "trot": Gait("trot", 1.75, (1.5, 2.0), 2.6, 0.45, (0.0, 0.5, 0.5, 0.0), 0.08, 0.012, 0.43),
    # Canter (right lead): trailing hind, then the diagonal pair, then the leading fore, suspension.
    "canter": Gait("canter", 3.0, (2.7, 3.3), 3.2, 0.36, (0.28, 0.52, 0.0, 0.2), 0.10, 0.02, 0.41),
}


@dataclasses.dataclass(frozen=True)
class Segment:
    """One piece of an activity plan.

    Attributes:
      activity: one of :data:`ACTIVITIES`.
      seconds: duration.
      turn_degrees: heading change over the segment (positive = to the left); moving activities only.
      speed: m/s for moving activities; ``None`` uses the gait's nominal speed.
    """

    activity: str
    seconds: float
    turn_degrees: float = 0.0
    speed: float | None = None

    def __post_init__(self) -> None:
        if self.activity not in ACTIVITIES:
            raise ValueError(f"unknown activity {self.activity!r}; expected one of {ACTIVITIES}")
        if not self.seconds > 0:
            raise ValueError(f"segment duration must be positive, got {self.seconds}")
        if self.turn_degrees and self.activity not in MOVING_ACTIVITIES:
            raise ValueError(f"only moving activities {MOVING_ACTIVITIES} can turn, not {self.activity!r}")
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"segment speed must be positive, got {self.speed}")


@dataclasses.dataclass(frozen=True)
class SyntheticClip:
    """A generated clip with its ground truth.

    Attributes:
      motion: the clip, in the conventions of a BVH clip loaded in metres.
      styles: ``(T,)`` int MANN style index (0 Idle, 1 Move, 2 Jump, 3 Sit, 4 Stand — never
        generated, 5 Lie): the activity's style, except that Idle and Move switch where the path
        speed crosses 0.2 m/s (speed ramps straddle segment boundaries).
      contacts: ``(T, 4)`` bool, paw in stance (planted), paw order :data:`PAW_NAMES`.
      activities: ``(T,)`` int index into :data:`ACTIVITIES`, the planned activity (a jump segment
        counts as ``jump`` from the crouch to the end of the landing, ``idle`` around it).
      plan: the segments the clip was generated from (truncated to the clip's length).
    """

    motion: Motion
    styles: np.ndarray
    contacts: np.ndarray
    activities: np.ndarray
    plan: tuple[Segment, ...]


# ---------------------------------------------------------------------------------------------
# Per-activity body pose targets
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _PoseTargets:
    """Targets of the body pose for an activity (angles in degrees, lengths in metres).

    Paw homes are relative to the path point, in its (forward, lateral-outwards) frame; the Hips
    sit ``shift`` ahead of the path point. Pitches of neck, head, tail and the paw segments are
    relative to the horizontal; the scapula's relative to the body.
    """

    height: float
    pitch: float
    shift: float
    front_home: tuple[float, float]
    hind_home: tuple[float, float]
    spine1: float
    neck: float
    head: float
    tail: tuple[float, float]
    wag: float
    front_meta: float
    hind_meta: float
    knee_up: float
    knee_out: float
    elbow_up: float
    scapula: float
    head_noise: float
    swing_flex: float = 1.0


_STAND = _PoseTargets(
    height=0.44, pitch=0.0, shift=0.0, front_home=(0.43, 0.055), hind_home=(-0.04, 0.055), spine1=2.0,
    neck=25.0, head=-20.0, tail=(-50.0, -65.0), wag=8.0, front_meta=-62.0, hind_meta=-82.0,
    knee_up=0.0, knee_out=0.0, elbow_up=0.0, scapula=-45.0, head_noise=15.0,
)

_POSES: dict[str, _PoseTargets] = {
    "idle": _STAND,
    "walk": dataclasses.replace(_STAND, neck=20.0, head=-25.0, tail=(-25.0, -35.0), wag=15.0, head_noise=6.0),
    "trot": dataclasses.replace(_STAND, height=0.43, neck=15.0, head=-25.0, tail=(-15.0, -25.0), wag=10.0,
                                head_noise=4.0),
    "canter": dataclasses.replace(_STAND, height=0.41, neck=10.0, head=-25.0, tail=(-5.0, -15.0), wag=4.0,
                                  head_noise=3.0),
    # Sit: the rear goes down and back over the planted hind paws (the hocks come to the floor just
    # ahead of the hip joints, thighs forward), the front paws step back.
    "sit": dataclasses.replace(
        _STAND, height=0.17, pitch=42.0, shift=-0.16, front_home=(0.22, 0.055), hind_home=(-0.02, 0.065),
        spine1=0.0, neck=50.0, head=-10.0, tail=(-30.0, 0.0), wag=5.0, front_meta=-70.0, hind_meta=-8.0,
        knee_up=1.0, knee_out=0.15, scapula=-50.0, swing_flex=0.2),
    # Lie (sphinx): the body goes down and back, front legs fold forward onto the floor, hind legs
    # fold with the knees out; no paw moves.
    "lie": dataclasses.replace(
        _STAND, height=0.15, pitch=8.0, shift=-0.14, front_home=(0.43, 0.06), hind_home=(-0.04, 0.075), spine1=0.0,
        neck=40.0, head=-10.0, tail=(-20.0, 0.0), wag=4.0, front_meta=-5.0, hind_meta=-5.0, knee_up=1.5,
        knee_out=0.6, elbow_up=-1.0, scapula=-30.0, swing_flex=0.2),
    "jump": dataclasses.replace(_STAND, tail=(-10.0, -20.0), wag=0.0, head_noise=3.0),
}

# Fixed secondary-motion and smoothing constants.
# Transitions between segments: Hann-window ramps of these widths centred on the boundary.
_SPEED_RAMP_S = 1.0
_YAW_RAMP_S = 0.4
_POSE_RAMP_S = 1.2
_LOCOMOTION_SPEED = 0.005  # m/s: below it (outside speed ramps) all paws stand
_MOVE_STYLE_SPEED = 0.2  # m/s: the Move style starts / ends where the path speed crosses it
_PAD_S = 1.0  # simulated before and after the clip so it starts and ends mid-activity
_POSE_STEP_S = 0.25  # swing of a re-positioning step (sit / lie transitions)
_POSE_STEP_LIFT = 0.04
_MAX_SUSPENSION_S = 0.05  # longest all-paws-off phase of a gait (a jump's flight is 0.42 s)
_JOINT_CLEARANCE = 0.01  # wrists and hocks stay this far above the floor when the paw allows it
_FOLD = 0.2  # fraction of a 2-bone chain's length it may fold to
_REACH = 0.985  # fraction of a 2-bone chain's length the IK may use before bending the paw

# Jump timeline (seconds from the start of the jump segment).
_JUMP_LEAD_S = 0.3  # standing before the crouch
_JUMP_CROUCH_S = 0.5  # crouch start to take-off
_JUMP_FLIGHT_S = 0.42
_JUMP_LAND_S = 0.6
_JUMP_MIN_S = _JUMP_LEAD_S + _JUMP_CROUCH_S + _JUMP_FLIGHT_S + _JUMP_LAND_S
_GRAVITY = 9.81

# Bone lengths (metres), from the skeleton.
_SK = dog_skeleton()
_OFF = {n: _SK.offsets[i] for i, n in enumerate(_SK.names)}
_LEN = {n: float(np.linalg.norm(o)) for n, o in _OFF.items()}

_UP = np.array([0.0, 1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Small vector helpers (all vectorised over a leading frame axis)
# ---------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1, keepdims=True)


def _smoothstep5(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk interpolation weight on [0, 1] (zero velocity and acceleration at the ends)."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


def _ramp(x: np.ndarray, width_frames: float) -> np.ndarray:
    """Smooth a piecewise-constant signal along axis 0 with a Hann window.

    A step becomes a C2 ramp exactly ``width_frames`` long, centred on the step.
    """
    n = max(1, int(round(width_frames)))
    kernel = np.hanning(n + 2)[1:-1]
    return convolve1d(np.asarray(x, dtype=np.float64), kernel / kernel.sum(), axis=0, mode="nearest")


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_frames: float) -> np.ndarray:
    """Smooth random signals with unit standard deviation (Gaussian-filtered white noise)."""
    x = gaussian_filter1d(rng.standard_normal(shape), sigma_frames, axis=0, mode="wrap")
    return x / max(float(x.std()), 1e-12)


def _align_to_x(v: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) taking the direction ``v`` onto +X by the smallest rotation."""
    a = _unit(np.asarray(v, dtype=np.float64))
    x = np.array([1.0, 0.0, 0.0])
    axis = np.cross(a, x)
    s, c = np.linalg.norm(axis), float(a @ x)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([-1.0, -1.0, 1.0])
    return Rotation.from_rotvec(axis / s * math.atan2(s, c)).as_matrix()


def _frames(direction: np.ndarray, z_hint: np.ndarray, child_offset: np.ndarray) -> np.ndarray:
    """World rotations ``(T, 3, 3)`` of bones whose child offset points along ``direction``.

    The bone's local +X (then corrected for the child offset's exact direction) follows
    ``direction`` and its local +Z is as close to ``z_hint`` as possible.
    """
    x = _unit(direction)
    z = _unit(z_hint - _dot(z_hint, x) * x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1) @ _align_to_x(child_offset)


def _two_bone_ik(root: np.ndarray, target: np.ndarray, l1: float, l2: float,
                 pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Middle-joint and end positions of a 2-bone chain reaching for ``target`` (bending towards ``pole``)."""
    v = target - root
    d = np.linalg.norm(v, axis=-1, keepdims=True)
    u = v / np.maximum(d, 1e-12)
    d = np.clip(d, abs(l1 - l2) + 1e-4, l1 + l2 - 1e-9)
    p = pole - _dot(pole, u) * u
    p = _unit(p)
    cos_a = np.clip((l1 * l1 + d * d - l2 * l2) / (2.0 * l1 * d), -1.0, 1.0)
    mid = root + l1 * (cos_a * u + np.sqrt(1.0 - cos_a * cos_a) * p)
    return mid, root + d * u


def _reachable_segment(paw: np.ndarray, joint: np.ndarray, preferred: np.ndarray, length: float,
                       reach: tuple[float, float]) -> np.ndarray:
    """Direction (end joint → paw) of the last leg segment so the 2-bone chain above works well.

    Keeps ``preferred`` when the distance from ``joint`` to ``paw - length * direction`` lies in
    ``reach = (shortest, longest)``; otherwise turns it, in its plane with the paw-to-joint line,
    just enough (so the chain neither overstretches nor folds onto itself).
    """
    q = joint - paw
    qn = np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    qh = q / qn
    lo = np.clip((reach[0] ** 2 - qn * qn - length * length) / (2.0 * length * qn), -1.0, 1.0)
    hi = np.clip((reach[1] ** 2 - qn * qn - length * length) / (2.0 * length * qn), -1.0, 1.0)
    # Keep the joint above the floor (y = 0) first, if the paw allows it.
    top = np.clip((paw[..., 1:2] - _JOINT_CLEARANCE) / length, -1.0, 1.0)
    flat = preferred * np.array([1.0, 0.0, 1.0])
    flat_n = np.linalg.norm(flat, axis=-1, keepdims=True)
    lowered = np.sqrt(1.0 - top * top) * flat / np.maximum(flat_n, 1e-12) + top * _UP
    preferred = np.where((preferred[..., 1:2] > top) & (flat_n > 1e-6), lowered, preferred)
    a = _dot(preferred, qh)
    side = preferred - a * qh
    side_n = np.linalg.norm(side, axis=-1, keepdims=True)
    side = np.where(side_n > 1e-9, side / np.maximum(side_n, 1e-12), _unit(np.cross(qh, [0.0, 0.0, 1.0])))
    c = np.clip(a, lo, np.maximum(hi, lo))
    adjusted = c * qh + np.sqrt(1.0 - c * c) * side
    return np.where((a > hi) | (a < lo), adjusted, preferred)


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------


def _bout(rng: np.random.Generator, gait: str, turn: str | None) -> list[Segment]:
    """A locomotion bout, optionally with a turn in its middle and a gait change."""
    g = GAITS[gait]

    def speed() -> float:
        return float(rng.uniform(*g.speed_range))

    v = speed()
    segs = [Segment(gait, float(rng.uniform(1.5, 2.5)), float(rng.uniform(-15.0, 15.0)), v)]
    sign = float(rng.choice([-1.0, 1.0]))
    if turn == "gradual":
        segs.append(Segment(gait, float(rng.uniform(2.5, 3.5)), sign * 90.0, v))
    elif turn == "abrupt90":
        lo, hi = (0.9, 1.1) if gait == "walk" else (0.6, 0.8)
        segs.append(Segment(gait, float(rng.uniform(lo, hi)), sign * 90.0, v))
    elif turn == "abrupt180":
        lo, hi = (1.4, 1.6) if gait == "walk" else (1.0, 1.2)
        segs.append(Segment(gait, float(rng.uniform(lo, hi)), sign * 180.0, v))
    elif rng.random() < 0.5:
        # A gait change: walk <-> trot <-> canter.
        other = {"walk": "trot", "trot": str(rng.choice(["walk", "canter"])), "canter": "trot"}[gait]
        og = GAITS[other]
        segs.append(Segment(other, float(rng.uniform(1.5, 3.0)), float(rng.uniform(-30.0, 30.0)),
                            float(rng.uniform(*og.speed_range))))
    segs.append(Segment(gait, float(rng.uniform(1.0, 2.0)), float(rng.uniform(-15.0, 15.0)), speed()))
    return segs


def _block(rng: np.random.Generator, item: str) -> list[Segment]:
    """Segments of one plan item (an activity, or ``<gait>_<turn kind>``), followed by an idle."""
    if "_" in item:
        gait, turn = item.split("_")
        segs = _bout(rng, gait, turn)
    elif item in MOVING_ACTIVITIES:
        segs = _bout(rng, item, None)
    elif item == "sit":
        segs = [Segment("sit", float(rng.uniform(3.0, 4.5)))]
    elif item == "lie":
        segs = [Segment("lie", float(rng.uniform(3.5, 5.0)))]
    elif item == "jump":
        segs = [Segment("jump", float(rng.uniform(1.9, 2.2)))]
    elif item == "idle":
        segs = [Segment("idle", float(rng.uniform(1.5, 3.0)))]
    else:
        raise ValueError(f"unknown plan item {item!r}")
    # Long enough for the stop (speed ramps take 1 s) and the last steps before a new transition.
    rest = (1.4, 1.8) if segs[0].activity in MOVING_ACTIVITIES else (1.1, 1.4)
    return segs + [Segment("idle", float(rng.uniform(*rest)))]


_RANDOM_ITEMS: tuple[str, ...] = ("walk", "trot", "canter", "sit", "lie", "jump", "idle",
                                  "walk_gradual", "trot_gradual", "walk_abrupt90", "trot_abrupt90",
                                  "walk_abrupt180", "trot_abrupt180")


def random_plan(rng: np.random.Generator, seconds: float, required: Sequence[str] = ()) -> list[Segment]:
    """A random activity plan of at least ``seconds``.

    Args:
      rng: the random generator (the plan is a deterministic function of its state).
      seconds: minimum total duration.
      required: plan items placed first, in this order: an activity of :data:`ACTIVITIES` or
        ``<walk|trot>_<turn kind>`` with a kind of :data:`TURN_KINDS`.

    Returns:
      Segments starting with a short idle; locomotion bouts and stationary poses are separated by
      idles.
    """
    plan = [Segment("idle", float(rng.uniform(0.8, 1.2)))]
    items = list(required)
    total = sum(s.seconds for s in plan)
    while True:
        for item in items:
            block = _block(rng, item)
            plan += block
            total += sum(s.seconds for s in block)
        if total >= seconds:
            return plan
        items = [str(rng.choice(_RANDOM_ITEMS))]


def _resize(seg: Segment, frames: int, fps: float) -> Segment:
    """The segment lasting exactly ``frames`` frames, at the same yaw rate."""
    seconds = frames / fps
    return dataclasses.replace(seg, seconds=seconds, turn_degrees=seg.turn_degrees * seconds / seg.seconds)


def _fit_plan(plan: Sequence[Segment], num_frames: int, fps: float) -> list[Segment]:
    """The plan truncated, or its last segment extended, to exactly ``num_frames``."""
    out: list[Segment] = []
    frames = 0
    for seg in plan:
        n = _frames_of(seg, fps)
        if frames + n >= num_frames:
            out.append(_resize(seg, num_frames - frames, fps))
            return out
        out.append(dataclasses.replace(seg, seconds=n / fps))  # whole segments keep their turn
        frames += n
    out[-1] = _resize(out[-1], _frames_of(out[-1], fps) + num_frames - frames, fps)
    return out


def _frames_of(seg: Segment, fps: float) -> int:
    """Frames of a segment: its duration rounded half up, at least one."""
    return max(1, int(math.floor(seg.seconds * fps + 0.5)))


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Timeline:
    """Per-frame targets of a (padded) plan before smoothing."""

    activity: np.ndarray  # (T,) int
    speed: np.ndarray  # (T,)
    yaw_rate: np.ndarray  # (T,)
    gait: np.ndarray  # (T, 4 + 7): offsets, duty, frequency, nominal speed, lift, bob2, bob1, cruise speed
    pose: dict[str, np.ndarray]
    bounds: list[tuple[int, int, Segment]]


def _timeline(plan: Sequence[Segment], fps: float, rng: np.random.Generator) -> _Timeline:
    bounds: list[tuple[int, int, Segment]] = []
    start = 0
    for seg in plan:
        n = _frames_of(seg, fps)
        bounds.append((start, start + n, seg))
        start += n
    t = start
    activity = np.zeros(t, dtype=np.int64)
    speed = np.zeros(t)
    yaw_rate = np.zeros(t)
    gait = np.full((t, 11), np.nan)
    pose: dict[str, np.ndarray] = {f.name: np.zeros((t,) + np.shape(getattr(_STAND, f.name)))
                                   for f in dataclasses.fields(_PoseTargets)}
    pose["wag_freq"] = np.zeros(t)
    unwrapped = None
    for a, b, seg in bounds:
        activity[a:b] = ACTIVITIES.index(seg.activity)
        targets = _POSES[seg.activity]
        for f in dataclasses.fields(_PoseTargets):
            pose[f.name][a:b] = getattr(targets, f.name)
        pose["wag"][a:b] *= rng.uniform(0.5, 1.5)
        pose["head_noise"][a:b] *= rng.uniform(0.6, 1.3)
        pose["wag_freq"][a:b] = rng.uniform(1.8, 3.0)
        if seg.activity in GAITS:
            g = GAITS[seg.activity]
            speed[a:b] = g.speed if seg.speed is None else seg.speed
            pose["height"][a:b] = g.height
            yaw_rate[a:b] = np.clip(math.radians(seg.turn_degrees) / ((b - a) / fps), -MAX_YAW_RATE, MAX_YAW_RATE)
            # Unwrap phase offsets so that, blending between gaits, every paw's cycle speeds up
            # (offsets only decrease): a paw slowed down would stay planted too long to reach.
            offsets = np.array(g.offsets)
            if unwrapped is not None:
                offsets = unwrapped - (unwrapped - offsets) % 1.0
            unwrapped = offsets
            bob2, bob1 = (0.0, g.bob) if g.name == "canter" else (g.bob, 0.0)
            gait[a:b] = np.concatenate([offsets, [g.duty, g.frequency, g.speed, g.lift, bob2, bob1, speed[a]]])
    # Stationary stretches keep the gait parameters of the nearest locomotion (earlier first).
    have = ~np.isnan(gait[:, 0])
    if not have.any():
        g = GAITS["walk"]
        gait[:] = np.concatenate([g.offsets, [g.duty, g.frequency, g.speed, g.lift, 0.0, 0.0, g.speed]])
    else:
        idx = np.where(have, np.arange(t), -1)
        idx = np.maximum.accumulate(idx)
        first = int(np.argmax(have))
        idx[idx < 0] = first
        gait = gait[idx]
        gait[~have, 8:10] = 0.0  # no bobbing while standing
    return _Timeline(activity, speed, yaw_rate, gait, pose, bounds)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, stops)`` of the runs of True in a 1-D mask, stops exclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _leg_contacts(natural: np.ndarray, locomotion: np.ndarray) -> np.ndarray:
    """Stance of one paw: the gait's pattern while moving, standing otherwise.

    A stop takes effect at the paw's next natural touch-down, a start at its next natural lift-off,
    so no swing is cut short.
    """
    contact = natural.copy()
    t = len(natural)
    touchdown = np.flatnonzero(natural & ~np.concatenate([[True], natural[:-1]]))
    liftoff = np.flatnonzero(~natural & np.concatenate([[False], natural[:-1]]))
    for a, b in zip(*_runs(~locomotion)):
        if natural[a]:
            a2 = a
        else:
            k = np.searchsorted(touchdown, a)
            a2 = int(touchdown[k]) if k < len(touchdown) else t
        k = np.searchsorted(liftoff, b)
        b2 = int(liftoff[k]) if (b < t and k < len(liftoff)) else t
        contact[a2:b2] = True
    return contact


def _limit_suspension(contacts: np.ndarray, allowed: np.ndarray, max_frames: int) -> None:
    """Shorten gait suspensions to ``max_frames`` by landing the next paw early (in place)."""
    airborne = ~contacts.any(axis=1) & ~allowed
    for a, b in zip(*_runs(airborne)):
        if b - a <= max_frames:
            continue
        later = contacts[a:]
        first = np.where(later.any(axis=0), np.argmax(later, axis=0), len(later)) + a
        leg = int(np.argmin(first))
        contacts[a + max_frames:first[leg], leg] = True


def _paw_path(contact: np.ndarray, home: np.ndarray, lift: np.ndarray,
              extra_height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paw positions ``(T, 3)`` and swing progress ``(T,)`` (0 in stance) from stance and homes.

    Each stance run plants the paw at its home position at the run's middle frame (y = 0); swings
    interpolate between footholds with a minimum-jerk curve, lifted by ``lift * sin(pi s)`` (``lift``
    taken at the swing's middle frame) plus ``extra_height``.
    """
    t = len(contact)
    starts, stops = _runs(contact)
    if len(starts) == 0:  # airborne throughout: hover at home
        pos = home.copy()
        pos[:, 1] = lift + extra_height
        return pos, np.full(t, 0.5)
    footholds = home[(starts + stops - 1) // 2].copy()
    footholds[:, 1] = 0.0
    frame = np.arange(t)
    run = np.searchsorted(starts, frame, side="right") - 1  # last run started at or before t
    in_stance = contact
    prev = run
    nxt = run + 1
    # Before the first run: fly towards it; after the last: stay over it.
    has_prev = prev >= 0
    has_next = nxt < len(starts)
    prev_c = np.clip(prev, 0, len(starts) - 1)
    next_c = np.clip(nxt, 0, len(starts) - 1)
    a = np.where(has_prev[:, None], footholds[prev_c], footholds[next_c])
    b = np.where(has_next[:, None], footholds[next_c], a)
    t0 = np.where(has_prev, stops[prev_c] - 1, -1)
    t1 = np.where(has_next, starts[next_c], t)
    s = (frame - t0) / np.maximum(t1 - t0, 1)
    w = _smoothstep5(s)[:, None]
    swing = a + (b - a) * w
    middle = np.clip((t0 + t1) // 2, 0, t - 1)
    swing[:, 1] = lift[middle] * np.sin(np.pi * s) + extra_height
    stance_pos = footholds[np.clip(run, 0, len(starts) - 1)]
    pos = np.where(in_stance[:, None], stance_pos, swing)
    return pos, np.where(in_stance, 0.0, s)


class _Jumps(NamedTuple):
    """Per-frame profiles of the jumps of a (padded) plan; zero / False outside them."""

    dh: np.ndarray  # (T,) extra Hips height
    dpitch: np.ndarray  # (T,) extra body pitch
    speed: np.ndarray  # (T,) extra forward speed
    arc: np.ndarray  # (T,) height of the paws' flight arc
    flight: np.ndarray  # (T, 4) bool, paw in flight
    jumping: np.ndarray  # (T,) bool, crouch to end of landing (the Jump style)


def _jump_profiles(tl: _Timeline, fps: float, rng: np.random.Generator) -> _Jumps:
    """Extra height, pitch and forward speed of the jumps, flight masks and Jump-style frames."""
    t = len(tl.activity)
    time = np.arange(t) / fps
    dh = np.zeros(t)
    dpitch = np.zeros(t)
    speed = np.zeros(t)
    arc = np.zeros(t)
    flight = np.zeros((t, 4), dtype=bool)
    jumping = np.zeros(t, dtype=bool)
    for a, b, seg in tl.bounds:
        if seg.activity != "jump":
            continue
        dur = (b - a) / fps
        lead = _JUMP_LEAD_S + max(0.0, dur - _JUMP_MIN_S) / 2.0
        tc = a / fps + lead
        t0 = tc + _JUMP_CROUCH_S
        t1 = t0 + _JUMP_FLIGHT_S
        crouch = float(rng.uniform(0.05, 0.08))
        v_fwd = float(rng.uniform(0.6, 1.0)) / _JUMP_FLIGHT_S
        _jump_height(dh, arc, time, tc, t0, t1, crouch)
        _jump_speed(speed, time, t0, t1, v_fwd)
        up, down = math.radians(float(rng.uniform(10.0, 16.0))), math.radians(float(rng.uniform(8.0, 12.0)))
        _jump_pitch(dpitch, time, t0, t1, up, down)
        # Front paws leave and land first.
        front = (time >= t0 - 0.08) & (time < t1)
        hind = (time >= t0) & (time < t1 + 0.08)
        flight[:, 0] |= front
        flight[:, 1] |= front
        flight[:, 2] |= hind
        flight[:, 3] |= hind
        jumping |= (time >= tc) & (time < t1 + _JUMP_LAND_S)
    return _Jumps(dh, dpitch, speed, arc, flight, jumping)


def _jump_height(dh: np.ndarray, arc: np.ndarray, time: np.ndarray, tc: float, t0: float, t1: float,
                 crouch: float) -> None:
    """Write one jump's extra Hips height into ``dh`` and its flight arc into ``arc`` (in place)."""
    tf = _JUMP_FLIGHT_S
    apex = _GRAVITY * tf * tf / 8.0
    v_up = 4.0 * apex / tf
    # Crouch, push off (Hermite to the take-off velocity), ballistic flight, absorb.
    m = (time >= tc) & (time < t0 - 0.15)
    dh[m] = -crouch * _smoothstep5((time[m] - tc) / (_JUMP_CROUCH_S - 0.15))
    m = (time >= t0 - 0.15) & (time < t0)
    s = (time[m] - (t0 - 0.15)) / 0.15
    dh[m] = -crouch * (2 * s**3 - 3 * s**2 + 1) + 0.15 * v_up * (s**3 - s**2)
    m = (time >= t0) & (time < t1)
    s = (time[m] - t0) / tf
    dh[m] = arc[m] = 4.0 * apex * s * (1.0 - s)
    m = (time >= t1) & (time < t1 + 0.2)
    s = (time[m] - t1) / 0.2
    dh[m] = -0.2 * v_up * (s**3 - 2 * s**2 + s) - 0.06 * (3 * s**2 - 2 * s**3)
    m = (time >= t1 + 0.2) & (time < t1 + _JUMP_LAND_S)
    dh[m] = -0.06 * (1.0 - _smoothstep5((time[m] - t1 - 0.2) / (_JUMP_LAND_S - 0.2)))


def _jump_speed(speed: np.ndarray, time: np.ndarray, t0: float, t1: float, v_fwd: float) -> None:
    """Write one jump's extra forward speed into ``speed`` (in place)."""
    # Accelerate during push-off, constant in flight, brake on landing.
    m = (time >= t0 - 0.15) & (time < t0)
    speed[m] = v_fwd * (time[m] - (t0 - 0.15)) / 0.15
    m = (time >= t0) & (time < t1)
    speed[m] = v_fwd
    m = (time >= t1) & (time < t1 + 0.2)
    speed[m] = v_fwd * (1.0 - (time[m] - t1) / 0.2)


def _jump_pitch(dpitch: np.ndarray, time: np.ndarray, t0: float, t1: float, up: float, down: float) -> None:
    """Write one jump's extra body pitch into ``dpitch`` (in place): nose up at take-off, down at landing."""
    m = (time >= t0 - 0.25) & (time < t0)
    dpitch[m] = up * _smoothstep5((time[m] - (t0 - 0.25)) / 0.25)
    m = (time >= t0) & (time < t1)
    s = (time[m] - t0) / _JUMP_FLIGHT_S
    dpitch[m] = up + (-down - up) * _smoothstep5(s)
    m = (time >= t1) & (time < t1 + 0.35)
    dpitch[m] = -down * (1.0 - _smoothstep5((time[m] - t1) / 0.35))


def _pose_steps(tl: _Timeline, fps: float) -> np.ndarray:
    """``(T, 4)`` forced swings: one re-positioning step per paw whose home changes between poses."""
    t = len(tl.activity)
    swing = np.zeros((t, 4), dtype=bool)
    step = int(round(_POSE_STEP_S * fps))
    gap = int(round(0.3 * fps))
    for (_, _, before), (a, _, after) in zip(tl.bounds[:-1], tl.bounds[1:]):
        if before.activity in GAITS or after.activity in GAITS:
            continue
        p0, p1 = _POSES[before.activity], _POSES[after.activity]
        legs = []
        for leg in range(4):
            h0 = np.array(p0.front_home if leg < 2 else p0.hind_home)
            h1 = np.array(p1.front_home if leg < 2 else p1.hind_home)
            if np.linalg.norm(h1 - h0) > 0.03:
                legs.append(leg)
        for k, leg in enumerate(legs):
            s0 = a + int(round((k - (len(legs) - 1) / 2.0) * gap)) - step // 2
            swing[max(0, s0):max(0, s0 + step), leg] = True
    return swing


def _padded_plan(plan: Sequence[Segment], pad: int, fps: float) -> list[Segment]:
    """The plan with ``pad`` more frames of its first and last activities before and after it."""
    # The first and last activities continue for a second beyond the clip (a jump's standing).
    before, after = (seg if seg.activity != "jump" else Segment("idle", 1.0) for seg in (plan[0], plan[-1]))
    return [_resize(before, pad, fps), *plan, _resize(after, pad, fps)]


class _Targets(NamedTuple):
    """Smoothed per-frame targets of a padded plan (gait columns as in :attr:`_Timeline.gait`)."""

    speed: np.ndarray  # (T,) path speed
    offsets: np.ndarray  # (T, 4) paw phase offsets
    duty: np.ndarray
    freq_nom: np.ndarray
    speed_nom: np.ndarray
    lift: np.ndarray
    bob2: np.ndarray
    bob1: np.ndarray
    cruise: np.ndarray
    pose: dict[str, np.ndarray]
    jump: _Jumps


def _smoothed_targets(tl: _Timeline, fps: float, rng: np.random.Generator) -> _Targets:
    """The timeline's speed, gait and pose targets as ramps across segment boundaries, with the jumps."""
    speed = np.maximum(_ramp(tl.speed, _SPEED_RAMP_S * fps), 0.0)
    gait = _ramp(tl.gait, _POSE_RAMP_S * fps)
    pose = {k: _ramp(v, _POSE_RAMP_S * fps) for k, v in tl.pose.items()}
    return _Targets(speed, gait[:, :4], gait[:, 4], gait[:, 5], gait[:, 6], gait[:, 7], gait[:, 8], gait[:, 9],
                    gait[:, 10], pose, _jump_profiles(tl, fps, rng))


class _Path(NamedTuple):
    """The root path: turning rate, level heading axes and path points on the floor, per frame."""

    yaw_rate: np.ndarray  # (T,)
    fwd0: np.ndarray  # (T, 3) heading
    left0: np.ndarray  # (T, 3)
    points: np.ndarray  # (T, 3)


def _heading_and_path(tl: _Timeline, tg: _Targets, fps: float, pad: int, rng: np.random.Generator) -> _Path:
    """The heading (integral of the yaw rate) and path (integral of the speed along it), placed at random."""
    dt = 1.0 / fps
    t = len(tl.activity)
    yaw_rate = _ramp(tl.yaw_rate, _YAW_RAMP_S * fps) * np.clip(tg.speed / 0.3, 0.0, 1.0)
    heading = float(rng.uniform(-np.pi, np.pi)) + np.cumsum(yaw_rate) * dt
    fwd0 = np.stack([np.sin(heading), np.zeros(t), np.cos(heading)], axis=-1)
    left0 = np.stack([np.cos(heading), np.zeros(t), -np.sin(heading)], axis=-1)
    ground_speed = tg.speed + tg.jump.speed
    path = np.cumsum(ground_speed[:, None] * fwd0, axis=0) * dt
    path += np.array([rng.uniform(-1.0, 1.0), 0.0, rng.uniform(-1.0, 1.0)]) - path[pad]
    return _Path(yaw_rate, fwd0, left0, path)


def _gait_contacts(tl: _Timeline, tg: _Targets, yaw_rate: np.ndarray, fps: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(phase, locomotion, contacts)``: global gait phase, moving frames and ``(T, 4)`` paw stance."""
    dt = 1.0 / fps
    # Stride frequency grows with the square root of the bout's cruising speed of the front paws'
    # homes (turning sweeps them sideways), so stance lengths stay within the legs' reach in sharp
    # turns; it does not drop while starting or stopping (short steps, not slow ones).
    turn_speed = np.sqrt(tg.cruise**2 + (yaw_rate * _POSES["idle"].front_home[0]) ** 2)
    ratio = np.clip(np.sqrt(np.maximum(turn_speed, 1e-6) / tg.speed_nom), 0.6, 1.5)
    phase = np.cumsum(tg.freq_nom * ratio) * dt + float(rng.uniform(0.0, 1.0))
    leg_phase = (phase[:, None] - tg.offsets) % 1.0
    natural = leg_phase < tg.duty[:, None]
    locomotion = tg.speed > _LOCOMOTION_SPEED
    contacts = np.stack([_leg_contacts(natural[:, k], locomotion) for k in range(4)], axis=1)
    contacts &= ~(_pose_steps(tl, fps) | tg.jump.flight)
    _limit_suspension(contacts, np.any(tg.jump.flight, axis=1), max(1, int(round(_MAX_SUSPENSION_S * fps))))
    return phase, locomotion, contacts


class _Secondary(NamedTuple):
    """Secondary motion per frame: breathing (-1..1 at rest), head noise, tail wag, bending into turns."""

    breath: np.ndarray
    head_yaw: np.ndarray
    head_pitch: np.ndarray
    wag: np.ndarray
    bend: np.ndarray


def _secondary_motion(tg: _Targets, yaw_rate: np.ndarray, fps: float, rng: np.random.Generator) -> _Secondary:
    """Breathing, head noise, tail wag and bending into turns (angles in radians)."""
    dt = 1.0 / fps
    t = len(tg.speed)
    time = np.arange(t) * dt
    breath = np.sin(2.0 * np.pi * 0.45 * time + rng.uniform(0, 2 * np.pi)) * (1.0 - np.clip(tg.speed / 0.5, 0, 1))
    noise = _noise(rng, (t, 2), 0.5 * fps)
    head_yaw = np.radians(tg.pose["head_noise"]) * noise[:, 0]
    head_pitch = np.radians(tg.pose["head_noise"]) * 0.4 * noise[:, 1]
    wag = np.radians(tg.pose["wag"]) * np.sin(2.0 * np.pi * np.cumsum(tg.pose["wag_freq"]) * dt)
    bend = np.clip(yaw_rate * 0.08, -0.2, 0.2)
    return _Secondary(breath, head_yaw, head_pitch, wag, bend)


class _Body(NamedTuple):
    """The body per frame: pitched axes (``fwd``, ``up``, ``left``), level axes (``fwd0``, ``left0``), Hips."""

    fwd: np.ndarray
    up: np.ndarray
    fwd0: np.ndarray
    left0: np.ndarray
    hips: np.ndarray

    @property
    def left(self) -> np.ndarray:
        """The body's left axis: the pitch turns about it, so it stays level (``left0``)."""
        return self.left0

    def body_dir(self, pitch_rel: np.ndarray | float, yaw_rel: np.ndarray | float) -> np.ndarray:
        """``(T, 3)`` directions pitched and turned relative to the body's forward axis."""
        p, y = np.asarray(pitch_rel)[..., None], np.asarray(yaw_rel)[..., None]
        return np.cos(p) * (np.cos(y) * self.fwd + np.sin(y) * self.left) + np.sin(p) * self.up

    def level_dir(self, pitch_abs: np.ndarray, yaw_rel: np.ndarray) -> np.ndarray:
        """``(T, 3)`` directions pitched from the horizontal and turned relative to the heading."""
        p, y = pitch_abs[..., None], yaw_rel[..., None]
        return np.cos(p) * (np.cos(y) * self.fwd0 + np.sin(y) * self.left0) + np.sin(p) * _UP


def _body(tg: _Targets, path: _Path, phase: np.ndarray, sec: _Secondary) -> _Body:
    """The body's axes (pitched by activity, jumps, gait and breathing) and the Hips at the body's height."""
    pose, jump, bob1, fwd0 = tg.pose, tg.jump, tg.bob1, path.fwd0
    pitch = (np.radians(pose["pitch"]) + jump.dpitch + np.radians(3.0) * bob1 / 0.02 * np.sin(2 * np.pi * phase)
             + np.radians(0.4) * sec.breath)
    fwd = np.cos(pitch)[:, None] * fwd0 + np.sin(pitch)[:, None] * _UP
    up = -np.sin(pitch)[:, None] * fwd0 + np.cos(pitch)[:, None] * _UP
    height = (pose["height"] + tg.bob2 * np.cos(4 * np.pi * phase) + bob1 * np.cos(2 * np.pi * phase)
              + 0.002 * sec.breath + jump.dh)
    hips = path.points + pose["shift"][:, None] * fwd0 + height[:, None] * _UP
    return _Body(fwd, up, fwd0, path.left0, hips)


def _trunk_frames(body: _Body, pose: dict[str, np.ndarray],
                  sec: _Secondary) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """World frames of the Hips, spine, neck and head, and the Spine1 position (the scapulae hang from it)."""
    t, hips, left = len(body.hips), body.hips, body.left
    world: dict[str, np.ndarray] = {}
    world["Hips"] = _frames(-body.fwd, left, np.array([1.0, 0.0, 0.0]))
    world["Spine"] = _frames(body.body_dir(np.radians(0.5) * sec.breath, sec.bend / 2), left, _OFF["Spine1"])
    spine1 = hips + world["Spine"] @ _OFF["Spine1"]
    world["Spine1"] = _frames(body.body_dir(np.radians(pose["spine1"]), sec.bend), left, _OFF["Neck"])
    neck_yaw = sec.bend + 0.4 * sec.head_yaw
    world["Neck"] = _frames(body.level_dir(np.radians(pose["neck"]) + 0.3 * sec.head_pitch, neck_yaw),
                            np.cos(neck_yaw)[:, None] * body.left0 - np.sin(neck_yaw)[:, None] * body.fwd0,
                            _OFF["Head"])
    # The head's local +Z is up (so its +Y is its left), as in the real clips.
    world["Head"] = _frames(body.level_dir(np.radians(pose["head"]) + sec.head_pitch, sec.bend + sec.head_yaw),
                            np.broadcast_to(_UP, (t, 3)), _OFF["HeadSite"])
    return world, spine1


def _tail_frames(body: _Body, pose: dict[str, np.ndarray], wag: np.ndarray,
                 hips_frame: np.ndarray) -> dict[str, np.ndarray]:
    """World frames of the tail's two bones, pitched relative to the horizontal and kept above the floor."""
    tail_pos = body.hips + hips_frame @ _OFF["Tail"]
    tail_pitch = np.radians(pose["tail"][:, 0])
    tail_pitch = np.maximum(tail_pitch, np.arcsin(np.clip((0.01 - tail_pos[:, 1]) / _LEN["Tail1"], -1, 1)))
    tail_dir = -body.level_dir(-tail_pitch, -0.5 * wag)  # backwards, pitched down by tail_pitch
    tail = _frames(tail_dir, body.left, _OFF["Tail1"])
    tail1_pos = tail_pos + tail @ _OFF["Tail1"]
    tail1_pitch = np.radians(pose["tail"][:, 1])
    tail1_pitch = np.maximum(tail1_pitch, np.arcsin(np.clip((0.01 - tail1_pos[:, 1]) / _LEN["Tail1Site"], -1, 1)))
    return {"Tail": tail, "Tail1": _frames(-body.level_dir(-tail1_pitch, -wag), body.left, _OFF["Tail1Site"])}


def _paws(tg: _Targets, path: _Path, contacts: np.ndarray,
          locomotion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 4, 3)`` paw positions and ``(T, 4)`` swing progress (0 in stance), footholds at the paws' homes."""
    t = len(contacts)
    paws = np.empty((t, 4, 3))
    swing_s = np.empty((t, 4))
    for leg in range(4):
        side = 1.0 if leg % 2 == 0 else -1.0
        home_fl = tg.pose["front_home"] if leg < 2 else tg.pose["hind_home"]
        home = path.points + home_fl[:, 0:1] * path.fwd0 + side * home_fl[:, 1:2] * path.left0
        leg_lift = np.where(tg.jump.flight[:, leg], 0.06, np.where(locomotion, tg.lift, _POSE_STEP_LIFT))
        paws[:, leg], swing_s[:, leg] = _paw_path(contacts[:, leg], home, leg_lift,
                                                  np.where(contacts[:, leg], 0.0, tg.jump.arc))
    return paws, swing_s


def _front_leg(side_name: str, paw: np.ndarray, flex: np.ndarray, body: _Body, pose: dict[str, np.ndarray],
               spine1: np.ndarray, spine1_frame: np.ndarray) -> dict[str, np.ndarray]:
    """World frames of one front leg (scapula, arm, forearm, metacarpus) with the paw at ``paw``."""
    zeros = np.zeros(len(paw))
    shoulder, arm, fore, hand = (f"{side_name}Shoulder", f"{side_name}Arm", f"{side_name}ForeArm",
                                 f"{side_name}Hand")
    shoulder_pos = spine1 + spine1_frame @ _OFF[shoulder]
    # The scapula turns towards the paw, more so when the paw is far (it lengthens the leg).
    base = body.body_dir(np.radians(pose["scapula"]), zeros)
    to_paw = paw - shoulder_pos
    w = 0.35 + 0.65 * _smoothstep5((np.linalg.norm(to_paw, axis=-1) - 0.41) / 0.06)[:, None]
    scap_dir = _unit((1.0 - w) * base + w * _unit(to_paw))
    scapula = _frames(scap_dir, body.left, _OFF[arm])
    arm_pos = shoulder_pos + scapula @ _OFF[arm]
    l1, l2, r = _LEN[fore], _LEN[hand], _LEN[f"{hand}Site"]
    pref = body.level_dir(np.radians(pose["front_meta"]) - np.radians(60.0) * flex, zeros)
    meta = _reachable_segment(paw, arm_pos, pref, r, (_FOLD * (l1 + l2), _REACH * (l1 + l2)))
    wrist = paw - r * meta
    pole = -body.fwd0 + pose["elbow_up"][:, None] * _UP
    elbow, wrist = _two_bone_ik(arm_pos, wrist, l1, l2, pole)
    # Local +Z of the leg bones is the elbow's hinge axis (the dog's left in a standing pose).
    hinge = np.cross(wrist - elbow, elbow - arm_pos)
    return {shoulder: scapula, arm: _frames(elbow - arm_pos, hinge, _OFF[fore]),
            fore: _frames(wrist - elbow, hinge, _OFF[hand]), hand: _frames(meta, hinge, _OFF[f"{hand}Site"])}


def _hind_leg(side_name: str, side: float, paw: np.ndarray, flex: np.ndarray, body: _Body,
              pose: dict[str, np.ndarray], hips_frame: np.ndarray) -> dict[str, np.ndarray]:
    """World frames of one hind leg (thigh, shank, metatarsus) with the paw at ``paw``."""
    zeros = np.zeros(len(paw))
    up_leg, knee_name, foot = f"{side_name}UpLeg", f"{side_name}Leg", f"{side_name}Foot"
    hip = body.hips + hips_frame @ _OFF[up_leg]
    l1, l2, r = _LEN[knee_name], _LEN[foot], _LEN[f"{foot}Site"]
    pref = body.level_dir(np.radians(pose["hind_meta"]) - np.radians(45.0) * flex, zeros)
    meta = _reachable_segment(paw, hip, pref, r, (_FOLD * (l1 + l2), _REACH * (l1 + l2)))
    hock = paw - r * meta
    pole = body.fwd0 + pose["knee_up"][:, None] * _UP + side * pose["knee_out"][:, None] * body.left0
    knee, hock = _two_bone_ik(hip, hock, l1, l2, pole)
    # Local +Z of the leg bones is the stifle's hinge axis (the dog's left in a standing pose).
    hinge = np.cross(knee - hip, hock - knee)
    return {up_leg: _frames(knee - hip, hinge, _OFF[knee_name]), knee_name: _frames(hock - knee, hinge, _OFF[foot]),
            foot: _frames(meta, hinge, _OFF[f"{foot}Site"])}


def _world_frames(body: _Body, pose: dict[str, np.ndarray], sec: _Secondary, paws: np.ndarray,
                  swing_s: np.ndarray) -> dict[str, np.ndarray]:
    """``(T, 3, 3)`` world frames of the bones the pose sets, by name (the others follow their parents)."""
    world, spine1 = _trunk_frames(body, pose, sec)
    world.update(_tail_frames(body, pose, sec.wag, world["Hips"]))
    for leg, side_name in enumerate(("Left", "Right", "Left", "Right")):
        flex = pose["swing_flex"] * np.sin(np.pi * swing_s[:, leg])
        if leg < 2:
            world.update(_front_leg(side_name, paws[:, leg], flex, body, pose, spine1, world["Spine1"]))
        else:
            side = 1.0 if leg % 2 == 0 else -1.0
            world.update(_hind_leg(side_name, side, paws[:, leg], flex, body, pose, world["Hips"]))
    return world


def _local_transforms(world: dict[str, np.ndarray], hips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, J, 4)`` local quaternions and ``(T, J, 3)`` local translations of :data:`_SK` from world frames."""
    sk = _SK
    j = sk.num_points
    t = len(hips)
    world_all = np.empty((t, j, 3, 3))
    for k, n in enumerate(sk.names):
        world_all[:, k] = world[n] if n in world else world_all[:, sk.parents[k]]
    local = world_all.copy()
    for k in range(1, j):
        local[:, k] = np.swapaxes(world_all[:, sk.parents[k]], -1, -2) @ world_all[:, k]
    quats = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_quat(canonical=True).reshape(t, j, 4)
    quats[:, sk.is_end_site] = np.array([0.0, 0.0, 0.0, 1.0])
    translations = np.broadcast_to(sk.offsets, (t, j, 3)).copy()
    translations[:, 0] = hips
    return quats, translations


def _labels(planned: np.ndarray, jumping: np.ndarray, speed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(activities, styles)`` per frame: the planned activity, and its style following the motion."""
    activity = planned.copy()
    # A jump segment stands before the crouch and after the landing.
    activity[(activity == ACTIVITIES.index("jump")) & ~jumping] = ACTIVITIES.index("idle")
    styles = np.array([ACTIVITY_STYLE[a] for a in ACTIVITIES], dtype=np.int64)[activity]
    # Idle and Move follow the motion: starting and stopping ramps straddle segment boundaries.
    moving = speed > _MOVE_STYLE_SPEED
    styles[(styles == ACTIVITY_STYLE["idle"]) & moving] = ACTIVITY_STYLE["walk"]
    styles[(styles == ACTIVITY_STYLE["walk"]) & ~moving] = ACTIVITY_STYLE["idle"]
    return activity, styles


def _generate(plan: Sequence[Segment], fps: float, rng: np.random.Generator, name: str) -> SyntheticClip:
    """Generate a clip from a plan whose frames sum to the clip length (see module docstring)."""
    num_frames = sum(_frames_of(s, fps) for s in plan)
    pad = int(round(_PAD_S * fps))
    # Each step draws from rng in turn, so their order fixes the clips of a seed.
    tl = _timeline(_padded_plan(plan, pad, fps), fps, rng)
    tg = _smoothed_targets(tl, fps, rng)
    path = _heading_and_path(tl, tg, fps, pad, rng)
    phase, locomotion, contacts = _gait_contacts(tl, tg, path.yaw_rate, fps, rng)
    sec = _secondary_motion(tg, path.yaw_rate, fps, rng)
    body = _body(tg, path, phase, sec)
    paws, swing_s = _paws(tg, path, contacts, locomotion)
    quats, translations = _local_transforms(_world_frames(body, tg.pose, sec, paws, swing_s), body.hips)
    crop = slice(pad, pad + num_frames)
    activity, styles = _labels(tl.activity[crop], tg.jump.jumping[crop], tg.speed[crop])
    motion = Motion(name=name, skeleton=_SK, local_rotations=np.ascontiguousarray(quats[crop]),
                    local_translations=np.ascontiguousarray(translations[crop]), frame_time=1.0 / fps)
    return SyntheticClip(motion=motion, styles=styles, contacts=np.ascontiguousarray(contacts[crop]),
                         activities=activity, plan=tuple(plan))


def generate_clip(*, seed: int, activity_plan: Sequence[Segment] | None = None, num_frames: int | None = None,
                  fps: float = 60.0, name: str | None = None) -> SyntheticClip:
    """Generate one clip, deterministically from ``seed``.

    Args:
      seed: random seed (plan, speeds, start position and heading, secondary motion).
      activity_plan: the segments to perform; ``None`` draws a random plan.
      num_frames: clip length; ``None`` is the plan's length (20 s for a random plan). A given plan
        is truncated, or its last segment extended, to this length.
      fps: frame rate.
      name: motion name; default ``synthetic_<seed>``.

    Returns:
      The clip with its ground-truth styles, contacts and activities.
    """
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rng = np.random.default_rng(seed)
    if activity_plan is None:
        n = int(round(20.0 * fps)) if num_frames is None else int(num_frames)
        plan = _fit_plan(random_plan(rng, n / fps), n, fps)
    else:
        plan = list(activity_plan)
        if not plan:
            raise ValueError("activity_plan must contain at least one segment")
        if num_frames is not None:
            plan = _fit_plan(plan, int(num_frames), fps)
    return _generate(plan, float(fps), rng, name if name is not None else f"synthetic_{seed:03d}")


_REQUIRED_ITEMS: tuple[str, ...] = ("sit", "trot_abrupt180", "lie", "walk_abrupt90", "jump", "canter",
                                    "walk_gradual", "trot_abrupt90", "walk_abrupt180", "trot_gradual")


def generate_default_clips(*, seed: int = 0, num_clips: int = 8, seconds_per_clip: float = 20.0,
                           fps: float = 60.0) -> list[SyntheticClip]:
    """The embedded default dataset: ``num_clips`` clips covering every activity and turn kind.

    The required items (each activity, gradual and abrupt 90°/180° turns while walking and
    trotting) are dealt round-robin over the clips and placed first; the rest is random. With
    the defaults (8 × 20 s ≈ 2.7 min) every item fits; with much less time some may be cut.
    Identical for identical arguments.
    """
    root = np.random.SeedSequence(seed)
    clips = []
    n = int(round(seconds_per_clip * fps))
    for i, child in enumerate(root.spawn(num_clips)):
        rng = np.random.default_rng(child)
        required = list(_REQUIRED_ITEMS[i::num_clips])
        rng.shuffle(required)
        plan = _fit_plan(random_plan(rng, seconds_per_clip, required), n, fps)
        clips.append(_generate(plan, fps, rng, f"synthetic_{i:03d}"))
    return clips


#: The modules whose code decides the rows of a built dataset: this generator, the BVH reader and
#: the feature pipeline. A dataset cache keyed on :func:`code_fingerprint` is never served stale
#: after any of them changes, with no version number to remember to bump.
ROW_CODE_MODULES: tuple[str, ...] = (
    "mann_jax.data.synthetic", "mann_jax.data.bvh", "mann_jax.data.skeleton", "mann_jax.data.trajectory",
    "mann_jax.data.contacts", "mann_jax.data.styles", "mann_jax.data.features", "mann_jax.data.layout",
    "mann_jax.data.normalisation", "mann_jax.data.dataset", "mann_jax.data.checks",
)


@functools.cache
def code_fingerprint(modules: tuple[str, ...] = ROW_CODE_MODULES) -> str:
    """SHA-256 (16 hex digits) of the source files of ``modules``, read without importing them.

    Any edit to one of them (comments included) gives a new fingerprint: a cache rebuild is cheap,
    a stale dataset is not.
    """
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"code_fingerprint: no source for module {name!r}")
        h.update(name.encode() + b"\0")
        with open(spec.origin, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the default clips as BVH files (``--out DIR``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    try:
        from mann_jax.data.bvh import save_bvh
    except ImportError:
        print("mann_jax.data.bvh.save_bvh is not available; cannot write BVH files", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for clip in generate_default_clips(seed=args.seed, num_clips=args.num_clips, seconds_per_clip=args.seconds):
        path = args.out / f"{clip.motion.name}.bvh"
        save_bvh(clip.motion, path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
