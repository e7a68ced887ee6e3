"""Tests of the procedural quadruped (mann_jax.data.synthetic): skeleton, determinism, coverage and
physical sense (planted paws, constant bones, heading along the path, jumps, sitting, lying)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from mann_jax.data import layout
from mann_jax.data.skeleton import forward_kinematics
from mann_jax.data.synthetic import (
    ACTIVITIES,
    GAITS,
    MAX_YAW_RATE,
    PAW_NAMES,
    Segment,
    SyntheticClip,
    dog_skeleton,
    generate_clip,
    generate_default_clips,
    main,
)

FPS = 60
README_POINTS = list(zip(layout.BONES, layout.BONE_PARENTS))
REAL_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mann_dog_bvh" / "D1_001_KAN01_001.bvh"
IDLE, WALK, TROT, CANTER, SIT, LIE, JUMP = (ACTIVITIES.index(a) for a in ACTIVITIES)


@pytest.fixture(scope="module")
def clips() -> list[SyntheticClip]:
    return generate_default_clips(seed=0)


@pytest.fixture(scope="module")
def positions(clips: list[SyntheticClip]) -> list[np.ndarray]:
    return [forward_kinematics(c.motion).positions for c in clips]


def _paws(p: np.ndarray) -> np.ndarray:
    sk = dog_skeleton()
    return p[:, [sk.index(n) for n in PAW_NAMES]]


def _settled(mask: np.ndarray, seconds: float = 0.75) -> np.ndarray:
    """Frames of ``mask`` at least ``seconds`` away from its edges (transitions finished)."""
    return binary_erosion(mask, iterations=int(seconds * FPS))


def _heading(p: np.ndarray) -> np.ndarray:
    """Horizontal unit direction Hips -> Neck."""
    sk = dog_skeleton()
    d = p[:, sk.index("Neck")] - p[:, sk.index("Hips")]
    d[:, 1] = 0.0
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _yaw(p: np.ndarray) -> np.ndarray:
    h = _heading(p)
    return np.unwrap(np.arctan2(h[:, 0], h[:, 2]))


def test_skeleton_matches_readme():
    sk = dog_skeleton()
    assert sk.num_points == 27
    assert list(zip(sk.names, sk.parents.tolist())) == README_POINTS
    assert sk.is_end_site.sum() == 6
    assert all(n.endswith("Site") == e for n, e in zip(sk.names, sk.is_end_site))
    np.testing.assert_allclose(sk.offsets[sk.index("LeftForeArm")], [0.152, 0.0, 0.0])
    np.testing.assert_allclose(sk.offsets[sk.index("RightFootSite")], [0.0, -0.108, 0.0])
    np.testing.assert_allclose(sk.offsets[sk.index("LeftUpLeg")], [0.0598425, -0.07666, 0.0478879])


def test_skeleton_matches_the_real_clips():
    bvh = pytest.importorskip("mann_jax.data.bvh")
    if not REAL_CLIP.exists():
        pytest.skip("the shared dog clips are not available")
    real = bvh.load_bvh(REAL_CLIP).skeleton
    sk = dog_skeleton()
    assert real.names == sk.names
    np.testing.assert_array_equal(real.parents, sk.parents)
    np.testing.assert_allclose(real.offsets[1:], sk.offsets[1:], atol=1e-9)  # the root's OFFSET is unused


def test_deterministic(clips: list[SyntheticClip]):
    again = generate_default_clips(seed=0)
    for a, b in zip(clips, again):
        assert a.motion.name == b.motion.name
        for field in ("local_rotations", "local_translations"):
            np.testing.assert_array_equal(getattr(a.motion, field), getattr(b.motion, field))
        for field in ("styles", "contacts", "activities"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    other = generate_default_clips(seed=1, num_clips=2, seconds_per_clip=5.0)
    assert not np.array_equal(other[0].motion.local_translations, clips[0].motion.local_translations[:300])
    one = generate_clip(seed=3, num_frames=240).motion.local_rotations
    np.testing.assert_array_equal(one, generate_clip(seed=3, num_frames=240).motion.local_rotations)
    assert not np.array_equal(one, generate_clip(seed=4, num_frames=240).motion.local_rotations)


def test_default_set_covers_every_activity(clips: list[SyntheticClip]):
    assert [c.motion.name for c in clips] == [f"synthetic_{i:03d}" for i in range(8)]
    total = sum(c.motion.num_frames for c in clips) / FPS
    assert 120.0 <= total <= 180.0
    seen = set().union(*(np.unique(c.activities).tolist() for c in clips))
    assert seen == set(range(len(ACTIVITIES)))
    styles = set().union(*(np.unique(c.styles).tolist() for c in clips))
    assert styles == {0, 1, 2, 3, 5}  # Stand (4) is not generated
    turns = set()
    for c in clips:
        for s in c.plan:
            if s.activity in ("walk", "trot") and math.isclose(abs(s.turn_degrees), 90.0):
                turns.add((s.activity, "gradual" if s.seconds >= 2.0 else "abrupt90"))
            elif s.activity in ("walk", "trot") and math.isclose(abs(s.turn_degrees), 180.0):
                turns.add((s.activity, "abrupt180"))
    assert turns == {(g, k) for g in ("walk", "trot") for k in ("gradual", "abrupt90", "abrupt180")}
    for c in clips:
        t = c.motion.num_frames
        assert c.styles.shape == (t,) and c.activities.shape == (t,)
        assert c.contacts.shape == (t, 4) and c.contacts.dtype == bool


def test_motion_conventions(clips: list[SyntheticClip], positions: list[np.ndarray]):
    sk = dog_skeleton()
    for c, p in zip(clips, positions):
        m = c.motion
        assert m.frame_time == pytest.approx(1.0 / FPS)
        t = m.num_frames
        assert m.local_rotations.shape == (t, 27, 4) and m.local_translations.shape == (t, 27, 3)
        np.testing.assert_allclose(np.linalg.norm(m.local_rotations, axis=-1), 1.0, atol=1e-9)
        np.testing.assert_array_equal(m.local_translations[:, 1:], np.broadcast_to(sk.offsets[1:], (t, 26, 3)))
        np.testing.assert_array_equal(m.local_rotations[:, sk.is_end_site], np.broadcast_to([0, 0, 0, 1.0], (t, 6, 4)))
        np.testing.assert_array_equal(m.local_translations[:, 0], p[:, 0])
        assert p[..., 1].min() > -1e-6  # nothing below the floor (y = 0, Y up)
        # Not upside down: the Hips' up axis (local +Y) points up, the head is above the hips.
        assert forward_kinematics(m).up[:, 0, 1].min() > 0.5
        assert (p[:, sk.index("Head"), 1] > p[:, 0, 1]).mean() > 0.9


def test_bone_lengths_constant(positions: list[np.ndarray]):
    sk = dog_skeleton()
    lengths = np.linalg.norm(sk.offsets[1:], axis=1)
    for p in positions:
        bones = np.linalg.norm(p[:, 1:] - p[:, sk.parents[1:]], axis=-1)
        np.testing.assert_allclose(bones, np.broadcast_to(lengths, bones.shape), atol=1e-9)


def test_paws_planted_in_stance(clips: list[SyntheticClip], positions: list[np.ndarray]):
    for c, p in zip(clips, positions):
        paws = _paws(p)
        stance = c.contacts
        assert 0.3 < stance.mean() < 1.0
        assert np.abs(paws[..., 1][stance]).max() < 0.01
        # Horizontal speed between consecutive stance frames (a central difference would mix in
        # the first swing frame).
        both = stance[1:] & stance[:-1]
        speed = np.linalg.norm(np.diff(paws[..., [0, 2]], axis=0), axis=-1) * FPS
        assert speed[both].max() < 0.05


def test_paws_alternate_and_lift_while_moving(clips: list[SyntheticClip], positions: list[np.ndarray]):
    for c, p in zip(clips, positions):
        moving = _settled(np.isin(c.activities, [WALK, TROT, CANTER]))
        if not moving.any():
            continue
        paws = _paws(p)
        for leg in range(4):
            stance = c.contacts[moving, leg]
            assert 0.2 < stance.mean() < 0.8
            assert paws[moving, leg, 1][~stance].max() > 0.04  # swings lift the paw


def test_gait_patterns(clips: list[SyntheticClip]):
    walk = np.concatenate([c.contacts[_settled(c.activities == WALK)] for c in clips])
    trot = np.concatenate([c.contacts[_settled(c.activities == TROT)] for c in clips])
    assert len(walk) > 200 and len(trot) > 200
    assert walk.sum(axis=1).min() >= 2  # a walk always has at least two paws down
    # Trot: diagonal pairs (left fore + right hind, right fore + left hind) move together.
    assert (trot[:, 0] == trot[:, 3]).mean() > 0.9 and (trot[:, 1] == trot[:, 2]).mean() > 0.9
    assert (trot[:, 0] == trot[:, 1]).mean() < 0.3


def test_speeds_per_activity(clips: list[SyntheticClip], positions: list[np.ndarray]):
    ranges = {IDLE: (0.0, 0.02), **{ACTIVITIES.index(g): GAITS[g].speed_range for g in GAITS}}
    for c, p in zip(clips, positions):
        hips = p[:, 0, [0, 2]]
        speed = np.linalg.norm(np.gradient(hips, axis=0), axis=1) * FPS
        for act, (lo, hi) in ranges.items():
            m = _settled(c.activities == act, 1.0)
            if m.any():
                assert lo * 0.95 <= np.median(speed[m]) <= hi * 1.05, (c.motion.name, ACTIVITIES[act])


def test_heading_follows_the_path(clips: list[SyntheticClip], positions: list[np.ndarray]):
    for _, p in zip(clips, positions):
        velocity = np.gradient(p[:, 0], axis=0) * FPS
        velocity[:, 1] = 0.0
        speed = np.linalg.norm(velocity, axis=1)
        fast = speed > 0.3
        cos = np.sum(_heading(p) * velocity, axis=1)[fast] / speed[fast]
        assert fast.sum() > 100
        assert (cos > 0.9).mean() > 0.95


def test_yaw_rate_bounded_and_accelerations_smooth(clips: list[SyntheticClip], positions: list[np.ndarray]):
    for c, p in zip(clips, positions):
        yaw_rate = np.abs(np.gradient(_yaw(p))) * FPS
        assert yaw_rate.max() < MAX_YAW_RATE * 1.1
        accel = np.linalg.norm(np.gradient(np.gradient(p[:, 0, [0, 2]], axis=0), axis=0), axis=1) * FPS**2
        away_from_jumps = ~binary_dilation(c.activities == JUMP, iterations=FPS // 2)
        assert accel[away_from_jumps].max() < 8.0  # m/s²


def test_planned_turn_is_performed():
    plan = [Segment("idle", 1.0), Segment("walk", 2.0), Segment("walk", 1.5, turn_degrees=180.0),
            Segment("walk", 2.0), Segment("idle", 1.5)]
    clip = generate_clip(seed=7, activity_plan=plan)
    assert clip.motion.num_frames == 8 * FPS
    assert clip.plan == tuple(plan)
    yaw = _yaw(forward_kinematics(clip.motion).positions)
    assert math.degrees(yaw[-1] - yaw[0]) == pytest.approx(180.0, abs=10.0)
    assert set(np.unique(clip.styles).tolist()) == {0, 1}
    shorter = generate_clip(seed=7, activity_plan=plan, num_frames=100)
    assert shorter.motion.num_frames == 100 and len(shorter.contacts) == 100


def test_jump_is_airborne(clips: list[SyntheticClip], positions: list[np.ndarray]):
    jumps = 0
    for c, p in zip(clips, positions):
        lowest = _paws(p)[..., 1].min(axis=1)
        edges = np.diff(np.concatenate([[0], (c.activities == JUMP).astype(int), [0]]))
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            jumps += 1
            assert (lowest[start:stop] > 0.05).sum() >= 10  # all paws above 5 cm for a while
            assert (~c.contacts[start:stop].any(axis=1)).sum() >= 10
            assert (c.styles[start:stop] == 2).all()
            # The Hips rise well above their standing height at the top of the flight.
            assert p[start:stop, 0, 1].max() > 0.55
    assert jumps >= 1


def test_sit_and_lie_lower_the_body(clips: list[SyntheticClip], positions: list[np.ndarray]):
    sk = dog_skeleton()
    found = set()
    for c, p in zip(clips, positions):
        hips = p[:, 0, 1]
        spine = p[:, sk.index("Neck")] - p[:, 0]
        pitch = np.degrees(np.arctan2(spine[:, 1], np.hypot(spine[:, 0], spine[:, 2])))
        front = np.linalg.norm(p[:, sk.index("LeftArm")] - p[:, sk.index("LeftHandSite")], axis=1)
        idle = _settled(c.activities == IDLE)
        sit = _settled(c.activities == SIT)
        lie = _settled(c.activities == LIE)
        if idle.any():
            assert hips[idle].min() > 0.4
        if sit.any():
            found.add("sit")
            assert hips[sit].max() < 0.25  # hind quarters down
            assert pitch[sit].min() > 25.0  # spine pitched up
            assert front[sit].min() > 0.85 * 0.402  # front legs (nearly) straight
            assert (c.styles[sit] == 3).all()
        if lie.any():
            found.add("lie")
            assert hips[lie].max() < 0.2 and np.abs(pitch[lie]).max() < 25.0
            assert p[lie][..., 1].max() < 0.35  # the whole body near the floor
            assert (c.styles[lie] == 5).all()
    assert found == {"sit", "lie"}


def test_invalid_arguments():
    with pytest.raises(ValueError):
        Segment("fly", 1.0)
    with pytest.raises(ValueError):
        Segment("sit", 2.0, turn_degrees=90.0)
    with pytest.raises(ValueError):
        Segment("walk", 0.0)
    with pytest.raises(ValueError):
        generate_clip(seed=0, num_frames=0)
    with pytest.raises(ValueError):
        generate_clip(seed=0, activity_plan=[])


def test_command_line_writes_bvh(tmp_path: Path):
    bvh = pytest.importorskip("mann_jax.data.bvh")
    if not hasattr(bvh, "save_bvh"):
        pytest.skip("mann_jax.data.bvh.save_bvh is not available")
    assert main(["--out", str(tmp_path), "--num-clips", "1", "--seconds", "3"]) == 0
    written = bvh.load_bvh(tmp_path / "synthetic_000.bvh")
    clip = generate_default_clips(num_clips=1, seconds_per_clip=3.0)[0]
    np.testing.assert_allclose(forward_kinematics(written).positions, forward_kinematics(clip.motion).positions,
                               atol=1e-5)


def test_code_fingerprint_follows_the_source(tmp_path, monkeypatch):
    from mann_jax.data.synthetic import ROW_CODE_MODULES, code_fingerprint

    assert "mann_jax.data.synthetic" in ROW_CODE_MODULES and "mann_jax.data.features" in ROW_CODE_MODULES
    fp = code_fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0 and code_fingerprint() == fp
    (tmp_path / "fp_probe_mod.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_fingerprint.__wrapped__(("fp_probe_mod",))
    assert code_fingerprint.__wrapped__(("fp_probe_mod",)) == before
    (tmp_path / "fp_probe_mod.py").write_text("X = 2\n")  # an edit to the code: a new key
    assert code_fingerprint.__wrapped__(("fp_probe_mod",)) != before
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        code_fingerprint.__wrapped__(("no_such_module_here",))
