"""The MANN input/output column map, as named slices — nobody counts columns by hand.

Input (480 columns), the original MANN dog layout (AI4Animation SIGGRAPH_2018)::

    [0, 156)    12 trajectory samples x 13 at the frame offsets :data:`SAMPLE_OFFSETS` (past
                samples every 1/6 s, sample 6 the current frame, future samples every 1/5 s),
                each relative to the CURRENT root:
                  +0 +1  position x, z          +2 +3  direction x, z
                  +4 +5  velocity x, z (m/s)    +6     speed (metres in the next second)
                  +7..+12  styles Idle, Move, Jump, Sit, Stand, Lie
    [156, 480)  27 bones x 12 of the PREVIOUS frame, relative to the PREVIOUS root:
                  +0..2 position, +3..5 forward (+Z axis), +6..8 up (+Y axis), both after the
                  bone's :data:`AXIS_CORRECTIONS`, +9..11 velocity (m/s)

Output (363 columns)::

    [0, 36)     future trajectory samples 6..11 x 6 of the NEXT frame, relative to the NEXT root:
                  position x, z, direction x, z, velocity x, z
    [36, 360)   27 bones x 12 of the CURRENT frame, relative to the CURRENT root (as above)
    [360, 363)  root update from the current to the next root, times the frame rate:
                  dx (m/s), dθ (degrees/s, + = turning left), dz (m/s)

Root-local coordinates: z = facing direction, y = world up, x = y × z (the character's LEFT).
Gating input: the 19 columns :data:`GATING_INDICES` — velocities of the four paw sites, the
current sample's speed and its 6 styles.
"""

from __future__ import annotations

import numpy as np

STYLES: tuple[str, ...] = ("Idle", "Move", "Jump", "Sit", "Stand", "Lie")
NUM_STYLES = len(STYLES)

# The MANN dog bone order (BVH depth-first order, End Sites included).
BONES: tuple[str, ...] = (
    "Hips", "Spine", "Spine1", "Neck", "Head", "HeadSite",
    "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftHandSite",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightHandSite",
    "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftFootSite",
    "RightUpLeg", "RightLeg", "RightFoot", "RightFootSite",
    "Tail", "Tail1", "Tail1Site",
)
NUM_BONES = len(BONES)
# Parent of each point, as in the BVH files (the shoulders hang off Spine1, not off the Neck as the
# data README's list says).
BONE_PARENTS: tuple[int, ...] = (
    -1, 0, 1, 2, 3, 4,  # Hips Spine Spine1 Neck Head HeadSite
    2, 6, 7, 8, 9,  # LeftShoulder LeftArm LeftForeArm LeftHand LeftHandSite
    2, 11, 12, 13, 14,  # RightShoulder ... RightHandSite
    0, 16, 17, 18,  # LeftUpLeg LeftLeg LeftFoot LeftFootSite
    0, 20, 21, 22,  # RightUpLeg ... RightFootSite
    0, 24, 25,  # Tail Tail1 Tail1Site
)
# Paw contact points, in this order everywhere (contacts, skating): front left, front right,
# hind left, hind right.
PAWS: tuple[str, ...] = ("LeftHandSite", "RightHandSite", "LeftFootSite", "RightFootSite")
PAW_INDICES: tuple[int, ...] = tuple(BONES.index(p) for p in PAWS)

NUM_TRAJECTORY_SAMPLES = 12
FRAMERATE = 60  # frames per second of every feature row (the exporter's Framerate)
CURRENT_SAMPLE = 6
# Frame offset of each sample from the current frame (TrajectoryModule.GetTrajectory): six past
# samples every 1/6 s, the current frame, five future samples every 1/5 s.
SAMPLE_OFFSETS: tuple[int, ...] = (-60, -50, -40, -30, -20, -10, 0, 12, 24, 36, 48, 60)
PAST_FRAMES = -SAMPLE_OFFSETS[0]  # 60
FUTURE_FRAMES = SAMPLE_OFFSETS[-1]  # 60

# Constant rotations about a bone's local x axis (degrees) that the original's skeleton applies
# before its forward (+Z) and up (+Y) axes are read: the MotionEditor's per-bone corrections for the
# dog. Not in the public code; inferred from the exporter's rows (mocap-sample.txt), where they are
# exact for every bone (python -m experiments.parity).
AXIS_CORRECTIONS: dict[str, float] = {
    "Head": 90.0, "HeadSite": 90.0, "LeftShoulder": 90.0, "RightShoulder": 90.0, "Tail": -45.0,
}

SAMPLE_WIDTH = 13  # pos 2, dir 2, vel 2, speed 1, styles 6
BONE_WIDTH = 12  # pos 3, forward 3, up 3, vel 3
OUTPUT_SAMPLE_WIDTH = 6  # pos 2, dir 2, vel 2
NUM_FUTURE_SAMPLES = NUM_TRAJECTORY_SAMPLES - CURRENT_SAMPLE  # 6

INPUT_TRAJECTORY = slice(0, NUM_TRAJECTORY_SAMPLES * SAMPLE_WIDTH)  # [0, 156)
INPUT_BONES = slice(INPUT_TRAJECTORY.stop, INPUT_TRAJECTORY.stop + NUM_BONES * BONE_WIDTH)  # [156, 480)
INPUT_DIM = INPUT_BONES.stop

OUTPUT_TRAJECTORY = slice(0, NUM_FUTURE_SAMPLES * OUTPUT_SAMPLE_WIDTH)  # [0, 36)
OUTPUT_BONES = slice(OUTPUT_TRAJECTORY.stop, OUTPUT_TRAJECTORY.stop + NUM_BONES * BONE_WIDTH)  # [36, 360)
OUTPUT_ROOT = slice(OUTPUT_BONES.stop, OUTPUT_BONES.stop + 3)  # [360, 363)
OUTPUT_DIM = OUTPUT_ROOT.stop

# Field offsets inside one trajectory sample / one bone block.
SAMPLE_FIELDS: dict[str, slice] = {
    "pos": slice(0, 2), "dir": slice(2, 4), "vel": slice(4, 6), "speed": slice(6, 7), "style": slice(7, 13),
}
OUTPUT_SAMPLE_FIELDS: dict[str, slice] = {"pos": slice(0, 2), "dir": slice(2, 4), "vel": slice(4, 6)}
BONE_FIELDS: dict[str, slice] = {"pos": slice(0, 3), "fwd": slice(3, 6), "up": slice(6, 9), "vel": slice(9, 12)}
ROOT_FIELDS: tuple[str, ...] = ("dx", "dtheta", "dz")


def _shift(s: slice, offset: int) -> slice:
    return slice(s.start + offset, s.stop + offset)


def input_sample(k: int, field: str) -> slice:
    """Input columns of trajectory sample ``k`` (0..11), field in :data:`SAMPLE_FIELDS`."""
    return _shift(SAMPLE_FIELDS[field], INPUT_TRAJECTORY.start + k * SAMPLE_WIDTH)


def input_bone(bone: int | str, field: str) -> slice:
    """Input columns of a bone (index or name), field in :data:`BONE_FIELDS`."""
    b = BONES.index(bone) if isinstance(bone, str) else bone
    return _shift(BONE_FIELDS[field], INPUT_BONES.start + b * BONE_WIDTH)


def output_sample(k: int, field: str) -> slice:
    """Output columns of future trajectory sample ``k`` (6..11), field in :data:`OUTPUT_SAMPLE_FIELDS`."""
    if not CURRENT_SAMPLE <= k < NUM_TRAJECTORY_SAMPLES:
        raise ValueError(f"output trajectory samples are {CURRENT_SAMPLE}..{NUM_TRAJECTORY_SAMPLES - 1}, got {k}")
    return _shift(OUTPUT_SAMPLE_FIELDS[field], OUTPUT_TRAJECTORY.start + (k - CURRENT_SAMPLE) * OUTPUT_SAMPLE_WIDTH)


def output_bone(bone: int | str, field: str) -> slice:
    """Output columns of a bone (index or name), field in :data:`BONE_FIELDS`."""
    b = BONES.index(bone) if isinstance(bone, str) else bone
    return _shift(BONE_FIELDS[field], OUTPUT_BONES.start + b * BONE_WIDTH)


def _indices(s: slice) -> list[int]:
    return list(range(s.start, s.stop))


# The original MANN gating input: paw velocities, then the current sample's speed and styles.
GATING_INDICES: tuple[int, ...] = tuple(
    [i for paw in PAWS for i in _indices(input_bone(paw, "vel"))]
    + _indices(input_sample(CURRENT_SAMPLE, "speed"))
    + _indices(input_sample(CURRENT_SAMPLE, "style"))
)


def input_column_names() -> list[str]:
    """A name for each of the 480 input columns, e.g. ``traj[6].style.Move``, ``bone[Hips].pos.y``."""
    names: list[str] = []
    for k in range(NUM_TRAJECTORY_SAMPLES):
        names += [f"traj[{k}].pos.x", f"traj[{k}].pos.z", f"traj[{k}].dir.x", f"traj[{k}].dir.z",
                  f"traj[{k}].vel.x", f"traj[{k}].vel.z", f"traj[{k}].speed"]
        names += [f"traj[{k}].style.{s}" for s in STYLES]
    names += _bone_column_names()
    return names


def output_column_names() -> list[str]:
    """A name for each of the 363 output columns."""
    names: list[str] = []
    for k in range(CURRENT_SAMPLE, NUM_TRAJECTORY_SAMPLES):
        names += [f"next_traj[{k}].pos.x", f"next_traj[{k}].pos.z", f"next_traj[{k}].dir.x",
                  f"next_traj[{k}].dir.z", f"next_traj[{k}].vel.x", f"next_traj[{k}].vel.z"]
    names += _bone_column_names()
    names += [f"root.{f}" for f in ROOT_FIELDS]
    return names


def _bone_column_names() -> list[str]:
    return [f"bone[{b}].{field}.{axis}" for b in BONES for field in BONE_FIELDS for axis in "xyz"]


def mirror_signs_and_permutation(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """How a left/right mirror acts on a feature vector: ``mirrored = (v * signs)[..., perm]``.

    The mirror negates every root-local x component and the turning rate, except that a bone's
    forward axis keeps its x and negates y and z (the original's mirror mode reverses the mirror
    image's forward axis: :func:`mann_jax.data.features.bone_axes`), and swaps each ``Left*`` bone
    block with its ``Right*`` twin. ``kind`` is ``"input"`` or ``"output"``.
    """
    names = {"input": input_column_names, "output": output_column_names}[kind]()

    def sign(name: str) -> float:
        if ".fwd." in name:
            return 1.0 if name.endswith(".x") else -1.0
        return -1.0 if name.endswith(".x") or name in ("root.dx", "root.dtheta") else 1.0

    signs = np.array([sign(n) for n in names])
    swapped = [n.replace("Left", "\0").replace("Right", "Left").replace("\0", "Right") for n in names]
    index = {n: i for i, n in enumerate(names)}
    perm = np.array([index[n] for n in swapped])
    return signs, perm


assert INPUT_DIM == 480 and OUTPUT_DIM == 363
assert GATING_INDICES == (285, 286, 287, 345, 346, 347, 393, 394, 395, 441, 442, 443, 84, 85, 86, 87, 88, 89, 90)
