"""Evaluation of generated motion: foot skating (:mod:`.skating`) and other motion metrics (:mod:`.motion`);
trained controllers under scenarios and held-out replays (:mod:`.controller`); expert ablation
(:mod:`.ablation`) and gating activations (:mod:`.gating`).

Every metric takes world-space positions with any leading batch axes (models, characters) before
the frame axis, so a whole sweep's rollouts (:mod:`mann_jax.control.rollout`) are measured in one
call; numpy and jax arrays are both accepted.
"""

from mann_jax.evaluate.motion import (
    BONE_SEGMENTS,
    DOG_PARENTS,
    BoneLengthDrift,
    FrozenTurning,
    SpeedTracking,
    bone_length_drift,
    bone_lengths,
    bone_position_error,
    frozen_while_turning,
    jitter,
    rest_bone_lengths,
    root_speed,
    root_speed_tracking,
    yaw_rate,
)
from mann_jax.evaluate.skating import (
    SKATING_HEIGHT,
    GroundTruthSkating,
    Skating,
    clip_skating,
    foot_skating,
    ground_truth_skating,
    is_flat_floor_clip,
    paw_positions,
    skating_per_frame,
    skating_weight,
)

__all__ = [
    "BONE_SEGMENTS", "DOG_PARENTS", "SKATING_HEIGHT", "BoneLengthDrift", "FrozenTurning", "GroundTruthSkating",
    "Skating", "SpeedTracking", "bone_length_drift", "bone_lengths", "bone_position_error", "clip_skating",
    "foot_skating", "frozen_while_turning", "ground_truth_skating", "is_flat_floor_clip", "jitter",
    "paw_positions", "rest_bone_lengths", "root_speed", "root_speed_tracking", "skating_per_frame",
    "skating_weight", "yaw_rate",
]
