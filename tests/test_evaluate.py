"""Metrics: foot skating by the study's formula (hand-computed cases), batching, motion metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mann_jax.data import layout
from mann_jax.evaluate import (
    DOG_PARENTS,
    SKATING_HEIGHT,
    bone_length_drift,
    bone_position_error,
    clip_skating,
    foot_skating,
    frozen_while_turning,
    ground_truth_skating,
    is_flat_floor_clip,
    jitter,
    paw_positions,
    rest_bone_lengths,
    root_speed_tracking,
    skating_per_frame,
    yaw_rate,
)

FPS = 60.0


def sliding_paws(T: int, *, height: float, speed: float) -> np.ndarray:
    """Four paws at ``height`` sliding along +x at ``speed`` m/s."""
    t = np.arange(T) / FPS
    paws = np.zeros((T, 4, 3))
    paws[..., 0] = speed * t[:, None] + np.arange(4) * 0.3
    paws[..., 1] = height
    return paws


def test_planted_paw_does_not_skate():
    paws = sliding_paws(30, height=0.0, speed=0.0)
    s = foot_skating(paws, fps=FPS)
    assert float(s.cm_per_frame) == 0.0
    np.testing.assert_array_equal(s.per_paw_cm_per_frame, 0.0)


def test_sliding_paw_matches_hand_computed_formula():
    # 0.6 m/s at 60 fps = 1 cm/frame; h = H/2 = 1.25 cm -> weight 2 - 2**0.5.
    paws = sliding_paws(11, height=SKATING_HEIGHT / 2, speed=0.6)
    s = foot_skating(paws, fps=FPS)
    expected = 1.0 * (2.0 - np.sqrt(2.0))
    np.testing.assert_allclose(s.per_paw_cm_per_frame, expected, rtol=1e-9)
    np.testing.assert_allclose(s.cm_per_frame, expected, rtol=1e-9)
    np.testing.assert_allclose(s.cm_per_second, expected * 60, rtol=1e-9)
    assert int(s.frames) == 10
    # On the floor the weight is exactly 1: s = v.
    np.testing.assert_allclose(foot_skating(sliding_paws(5, height=0.0, speed=0.6), fps=FPS).cm_per_frame, 1.0)
    # Vertical motion does not count; only horizontal speed does.
    paws = sliding_paws(5, height=0.0, speed=0.0)
    paws[:, :, 1] = np.linspace(0, 0.01, 5)[:, None]
    paws[:, :, 2] += np.arange(5)[:, None] * 0.02  # 2 cm/frame along z
    h = 0.5 * (paws[1:, 0, 1] + paws[:-1, 0, 1])
    np.testing.assert_allclose(skating_per_frame(paws)[:, 0], 0.02 * (2 - 2 ** (h / SKATING_HEIGHT)))


def test_no_skating_at_or_above_threshold_height():
    for h in (SKATING_HEIGHT, 0.03, 0.5):
        assert float(foot_skating(sliding_paws(10, height=h, speed=2.0), fps=FPS).cm_per_frame) == 0.0


def test_floor_height_per_frame_and_mask():
    raised = sliding_paws(12, height=1.0 + 0.01, speed=0.6)
    flat = sliding_paws(12, height=0.01, speed=0.6)
    a = foot_skating(raised, fps=FPS, floor_height=np.full(12, 1.0)).cm_per_frame
    np.testing.assert_allclose(a, foot_skating(flat, fps=FPS).cm_per_frame, rtol=1e-9)
    moving = flat.copy()
    moving[6:, :, 0] = moving[6, :, 0]  # still from frame 6 on
    mask = np.arange(11) >= 6
    assert float(foot_skating(moving, fps=FPS, mask=mask).cm_per_frame) == 0.0


def test_batched_equals_looped_and_jax_equals_numpy():
    rng = np.random.default_rng(0)
    paws = rng.normal(scale=0.02, size=(3, 2, 40, 4, 3)).cumsum(axis=2)
    paws[..., 1] = np.abs(paws[..., 1])
    batched = foot_skating(paws, fps=FPS)
    assert batched.cm_per_frame.shape == (3, 2) and batched.per_paw_cm_per_frame.shape == (3, 2, 4)
    for i in range(3):
        for j in range(2):
            single = foot_skating(paws[i, j], fps=FPS)
            np.testing.assert_allclose(batched.per_paw_cm_per_frame[i, j], single.per_paw_cm_per_frame, rtol=1e-12)
    assert batched.cm_per_frame.max() > 0
    jax_result = jax.jit(lambda p: foot_skating(p, fps=FPS))(jnp.asarray(paws, jnp.float32))
    assert isinstance(jax_result.cm_per_frame, jax.Array)
    np.testing.assert_allclose(jax_result.cm_per_frame, batched.cm_per_frame, rtol=1e-4)
    vmapped = jax.vmap(lambda p: foot_skating(p, fps=FPS).cm_per_frame)(jnp.asarray(paws[:, 0], jnp.float32))
    np.testing.assert_allclose(vmapped, batched.cm_per_frame[:, 0], rtol=1e-4)


def test_paw_positions_picks_the_four_paw_sites():
    bones = np.zeros((5, layout.NUM_BONES, 3))
    bones[:, :, 0] = np.arange(layout.NUM_BONES)
    np.testing.assert_array_equal(paw_positions(bones)[0, :, 0], [10, 15, 19, 23])


def test_raised_floor_clips_are_recognised():
    assert not is_flat_floor_clip("D1_ex03_KAN02_006")
    assert not is_flat_floor_clip("D1_ex04_KAN02_003.bvh")
    assert is_flat_floor_clip("D1_ex03_KAN02_001") and is_flat_floor_clip("D1_007_KAN01_001")


# ----------------------------------------------------------------------------- motion metrics


def chain(T: int) -> np.ndarray:
    """A rigid 27-point skeleton translating along z: every point at its depth along the tree."""
    p = np.zeros((T, layout.NUM_BONES, 3))
    for j, parent in enumerate(DOG_PARENTS):
        if parent >= 0:
            p[:, j] = p[:, parent] + np.array([0.0, 0.1 * (1 + j % 3), 0.05])
    p[..., 2] += (np.arange(T) / FPS)[:, None]
    return p


def test_bone_length_drift():
    p = chain(20)
    d = bone_length_drift(p)
    np.testing.assert_allclose(d.per_bone_m, 0.0, atol=1e-12)
    stretched = p.copy()
    stretched[10:, 5] += np.array([0.0, 0.0, 0.02])  # HeadSite moved 2 cm along z from frame 10 on
    d = bone_length_drift(stretched)
    head_site = layout.BONES.index("HeadSite") - 1
    base = np.linalg.norm(p[0, 5] - p[0, 4])
    new = np.linalg.norm(stretched[10, 5] - stretched[10, 4])
    np.testing.assert_allclose(d.per_bone_m[head_site], abs(new - base) * 10 / 20, rtol=1e-9)
    np.testing.assert_allclose(d.max_m, abs(new - base), rtol=1e-9)
    others = np.delete(np.asarray(d.per_bone_m), head_site)
    np.testing.assert_allclose(others, 0.0, atol=1e-12)
    # Against given reference lengths (e.g. the skeleton's), the error is the offset.
    ref = np.linalg.norm(p[0, 1:] - p[0, np.asarray(DOG_PARENTS[1:])], axis=-1) + 0.01
    np.testing.assert_allclose(bone_length_drift(p, reference=ref).per_bone_m, 0.01, rtol=1e-9)
    with pytest.raises(ValueError, match="reference"):
        bone_length_drift(p, reference="last")


def test_root_speed_tracking_and_yaw_rate():
    T = 61
    root = np.zeros((T, 3))
    root[:, 2] = 1.2 * np.arange(T) / FPS
    r = root_speed_tracking(root, np.full(T, 1.0), fps=FPS)
    np.testing.assert_allclose(r.mean_speed, 1.2, rtol=1e-9)
    np.testing.assert_allclose(r.mean_abs_error, 0.2, rtol=1e-9)
    # Turning left (toward +x from +z) at 90 deg/s reads +90.
    a = np.radians(90.0) * np.arange(T) / FPS
    dirs = np.stack([np.sin(a), np.zeros(T), np.cos(a)], axis=-1)
    np.testing.assert_allclose(yaw_rate(dirs, fps=FPS), 90.0, rtol=1e-6)
    np.testing.assert_allclose(yaw_rate(dirs[::-1], fps=FPS), -90.0, rtol=1e-6)


def test_jitter_zero_for_constant_velocity_and_exact_for_a_cubic():
    p = chain(30)
    np.testing.assert_allclose(jitter(p, fps=FPS), 0.0, atol=1e-6)
    t = np.arange(30) / FPS
    cubic = np.zeros((30, 2, 3))
    cubic[:, :, 0] = (t ** 3)[:, None]  # jerk = 6 m/s^3 everywhere
    np.testing.assert_allclose(jitter(cubic, fps=FPS), 6.0, rtol=1e-6)
    np.testing.assert_allclose(jitter(np.stack([cubic, 2 * cubic]), fps=FPS), [6.0, 12.0], rtol=1e-6)


def test_frozen_while_turning():
    T = 60
    a = np.radians(120.0) * np.arange(T) / FPS  # 120 deg/s turn in place
    dirs = np.stack([np.sin(a), np.zeros(T), np.cos(a)], axis=-1)
    root = np.zeros((T, 3))
    local_paws = np.array([[0.1, 0.0, 0.3], [-0.1, 0.0, 0.3], [0.1, 0.0, -0.3], [-0.1, 0.0, -0.3]])
    left = np.stack([dirs[:, 2], np.zeros(T), -dirs[:, 0]], axis=-1)
    statue = local_paws[None, :, 0:1] * left[:, None] + local_paws[None, :, 2:3] * dirs[:, None]
    f = frozen_while_turning(root, dirs, statue, fps=FPS)
    assert int(f.turning_frames) == T - 1 and float(f.fraction) == 1.0
    # In the world frame the statue's paws sweep around the root (0.3 m x 2.1 rad/s > 0.15 m/s).
    assert float(frozen_while_turning(root, dirs, statue, fps=FPS, frame="world").fraction) == 0.0
    stepping = statue.copy()
    stepping[:, 0, 2] += 0.3 * np.sin(np.arange(T) / FPS * 2 * np.pi * 2)  # one paw swings
    assert float(frozen_while_turning(root, dirs, stepping, fps=FPS).fraction) < 0.2
    straight = np.tile(np.array([0.0, 0.0, 1.0]), (T, 1))
    f = frozen_while_turning(root, straight, statue, fps=FPS)
    assert int(f.turning_frames) == 0 and float(f.fraction) == 0.0
    batched = frozen_while_turning(np.stack([root, root]), np.stack([dirs, straight]), np.stack([statue, statue]),
                                   fps=FPS)
    np.testing.assert_array_equal(batched.fraction, [1.0, 0.0])


def test_bone_position_error():
    a = np.zeros((2, 5, 27, 3))
    b = a.copy()
    b[..., 1] = 0.03
    np.testing.assert_allclose(bone_position_error(a, b), 0.03)


# ----------------------------------------------------------------------------- real clips


def test_ground_truth_skating_on_a_real_clip(dog_bvh_dir):
    from mann_jax.data.bvh import load_bvh

    motion = load_bvh(dog_bvh_dir / "D1_007_KAN01_001.bvh")
    assert tuple(motion.skeleton.parents) == DOG_PARENTS
    assert tuple(motion.skeleton.names) == layout.BONES
    s = clip_skating(motion)
    # A walking clip: mocap skates a little (paw sites roll on the floor), hind paws more than front.
    assert 0.02 < float(s.cm_per_frame) < 0.1
    assert s.per_paw_cm_per_frame[2:].mean() > s.per_paw_cm_per_frame[:2].mean()
    support = clip_skating(motion, floor="support")
    assert float(support.cm_per_frame) > 0
    with pytest.raises(ValueError, match="floor"):
        clip_skating(motion, floor="ceiling")
    gt = ground_truth_skating(dog_bvh_dir, clips=["D1_007_KAN01_001", "D1_ex04_KAN02_001"])
    assert list(gt.per_clip) == ["D1_007_KAN01_001"]  # the raised-floor clip is left out
    np.testing.assert_allclose(gt.clip_mean_cm_per_frame, float(s.cm_per_frame))
    assert rest_bone_lengths(motion.skeleton.offsets).shape == (layout.NUM_BONES - 1,)
