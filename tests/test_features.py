"""MANN features on real clips: dims, the row-to-row property, mirroring, root definition, contacts."""

import numpy as np
import pytest

from configs import default
from mann_jax.data import layout
from mann_jax.data.bvh import load_bvh
from mann_jax.data.contacts import detect_contacts, estimate_support_height
from mann_jax.data.dataset import build_dataset, clip_rows
from mann_jax.data.errors import MotionDataError
from mann_jax.data.features import MIN_CLIP_FRAMES, clip_features, mirror_features
from mann_jax.data.skeleton import Motion, forward_kinematics, mirror_pose
from mann_jax.data.styles import soft_styles
from mann_jax.data.trajectory import compute_root, signed_angle_degrees

# Clips whose floor is not at y = 0 everywhere (data README): kept out of floor-height checks.
RAISED_FLOOR = ("D1_ex03_KAN02_006", "D1_ex04_")


def _features(motion: Motion, labels=None):
    pose = forward_kinematics(motion)
    root = compute_root(pose, motion.skeleton, fps=motion.fps)
    styles = soft_styles(np.zeros(motion.num_frames, int) if labels is None else labels, 6.0)
    return pose, root, styles, clip_features(pose, motion.skeleton, root, styles, fps=motion.fps)


@pytest.fixture(scope="module")
def walk_clip(dog_bvh_dir) -> Motion:
    return load_bvh(dog_bvh_dir / "D1_007_KAN01_001.bvh")


def test_row_layout_and_row_to_row_property(walk_clip):
    _, _, _, f = _features(walk_clip)
    assert f.inputs.shape == (walk_clip.num_frames - MIN_CLIP_FRAMES + 1, 480)
    assert f.outputs.shape == (len(f.inputs), 363)
    # The current sample is the root itself: position 0, facing +z.
    np.testing.assert_allclose(f.inputs[:, layout.input_sample(6, "pos")], 0.0, atol=1e-6)
    dirs = f.inputs[:, layout.input_sample(6, "dir")]
    np.testing.assert_allclose(dirs, np.broadcast_to([0.0, 1.0], dirs.shape), atol=1e-6)
    # Output bones of row t are the input bones of row t + 1 (the original data's property).
    np.testing.assert_allclose(f.outputs[:-1, layout.OUTPUT_BONES], f.inputs[1:, layout.INPUT_BONES], atol=1e-5)
    # The next trajectory's current sample is the next root: output sample 6 position is 0.
    np.testing.assert_allclose(f.outputs[:, layout.output_sample(6, "pos")], 0.0, atol=1e-6)
    # Root update integrates to the next root: dz / fps equals the step along the facing.
    step = f.outputs[:, layout.OUTPUT_ROOT] / walk_clip.fps
    assert np.median(step[:, 2]) > 0.005  # walking forward, more than 0.3 m/s
    # Velocities of a walking dog in m/s, positions in metres (hips about 0.45 m high).
    hips_y = f.inputs[:, layout.input_bone("Hips", "pos")][:, 1]
    assert 0.3 < np.median(hips_y) < 0.6
    assert np.isfinite(f.inputs).all() and np.isfinite(f.outputs).all()


def test_mirrored_features_match_features_of_mirrored_motion(walk_clip):
    pose, root, styles, f = _features(walk_clip)
    mpose = mirror_pose(pose, walk_clip.skeleton)
    mroot = compute_root(mpose, walk_clip.skeleton, fps=walk_clip.fps)
    m = clip_features(mpose, walk_clip.skeleton, mroot, styles, fps=walk_clip.fps, mirrored=True)
    np.testing.assert_allclose(m.inputs, mirror_features(f.inputs, "input"), atol=2e-5)
    np.testing.assert_allclose(m.outputs, mirror_features(f.outputs, "output"), atol=2e-4)
    # Mirroring twice is the identity, for poses and for feature rows.
    twice = mirror_pose(mpose, walk_clip.skeleton)
    np.testing.assert_allclose(twice.positions, pose.positions, atol=1e-12)
    np.testing.assert_allclose(twice.rotations, pose.rotations, atol=1e-12)
    np.testing.assert_array_equal(mirror_features(mirror_features(f.inputs, "input"), "input"), f.inputs)
    # The mirror really swaps sides: the left front paw of the mirror is the right one, reflected.
    lhs = m.inputs[:, layout.input_bone("LeftHandSite", "pos")]
    rhs = f.inputs[:, layout.input_bone("RightHandSite", "pos")]
    np.testing.assert_allclose(lhs, rhs * [-1, 1, 1], atol=1e-5)


@pytest.mark.slow
def test_root_trajectory_is_smooth_and_facing_follows_motion(dog_clip_paths):
    aligned, moving = 0, 0
    for path in dog_clip_paths:
        motion = load_bvh(path)
        pose = forward_kinematics(motion)
        root = compute_root(pose, motion.skeleton, fps=motion.fps)
        fps = motion.fps
        # The smoothing window is clamped at the clip's ends (as the original's): judge the interior.
        inner = slice(6, -6)
        acc = np.linalg.norm(np.diff(root.positions[inner], 2, axis=0), axis=1) * fps**2
        hips = pose.positions[inner, 0] * [1, 0, 1]
        hips_acc = np.linalg.norm(np.diff(hips, 2, axis=0), axis=1) * fps**2
        # The original's light smoothing (5 frames each side) still takes the jitter out of the hips.
        assert np.percentile(acc, 99) < 0.85 * np.percentile(hips_acc, 99), path.name
        np.testing.assert_allclose(np.linalg.norm(root.directions, axis=1), 1.0, atol=1e-9)
        yaw_rate = np.abs(signed_angle_degrees(root.directions[:-1], root.directions[1:])) * fps
        assert yaw_rate.max() < 400.0, path.name  # no facing flips
        speed = np.linalg.norm(root.velocities[:-1], axis=1)
        straight = (speed > 0.5) & (yaw_rate < 45.0)
        cos = (root.velocities[:-1][straight] * root.directions[:-1][straight]).sum(1) / speed[straight]
        aligned += int((cos > 0.9).sum())
        moving += int(straight.sum())
    # Moving without turning, the dog faces where it goes (spinning in place and side steps aside).
    assert moving > 10000
    assert aligned / moving > 0.9


def test_paw_sites_near_floor_in_contact(dog_clip_paths):
    for path in dog_clip_paths:
        if path.stem.startswith(RAISED_FLOOR):
            continue
        motion = load_bvh(path)
        pose = forward_kinematics(motion)
        support = estimate_support_height(pose.positions, motion.skeleton, fps=motion.fps, window_seconds=2.0)
        contacts = detect_contacts(pose.positions, motion.skeleton, fps=motion.fps, floor_height=support)
        heights = pose.positions[:, list(layout.PAW_INDICES), 1]  # above y = 0, not the estimate
        assert contacts.any(), path.name
        assert np.percentile(heights[contacts], 95) < 0.05, path.name
        assert np.abs(support).max() < 0.1, path.name


def test_short_clip_and_nan_are_clear_errors(walk_clip):
    config = default.get_config().data
    short = Motion(walk_clip.name, walk_clip.skeleton, walk_clip.local_rotations[:100],
                   walk_clip.local_translations[:100], walk_clip.frame_time)
    with pytest.raises(MotionDataError, match=r"100 frames; the trajectory window needs at least 122"):
        clip_rows(short, config, source="short.bvh")
    bad = walk_clip.local_translations.copy()
    bad[5, 0, 1] = np.nan
    nan_clip = Motion(walk_clip.name, walk_clip.skeleton, walk_clip.local_rotations, bad, walk_clip.frame_time)
    with pytest.raises(MotionDataError, match="NaN"):
        clip_rows(nan_clip, config, source="nan.bvh")


@pytest.fixture(scope="module")
def dog_dataset(dog_bvh_dir, tmp_path_factory):
    config = default.get_config().data
    config.source = "bvh"
    config.path = str(dog_bvh_dir)
    config.cache_dir = str(tmp_path_factory.mktemp("cache"))
    return build_dataset(config, progress=False)


@pytest.mark.slow
def test_all_dog_clips(dog_dataset, dog_clip_paths):
    d = dog_dataset
    assert d.inputs.shape[1] == 480 and d.outputs.shape[1] == 363
    assert len(d.clip_names) == len(dog_clip_paths) == 40 and not d.skipped
    expected_rows = sum(2 * (t - MIN_CLIP_FRAMES + 1) for t in d.clip_frames)
    assert d.num_rows == expected_rows
    assert np.isfinite(d.inputs).all() and np.isfinite(d.outputs).all()
    summary = d.summary()
    # Every style occurs in the real data; the per-style counts are printed by prepare_data.
    assert all(v > 0 for v in summary["style_rows"].values()), summary["style_rows"]
    # Normalisation comes from the training clips; normalised training rows have unit variance.
    x, _ = d.arrays("train")
    std = x.astype(np.float64).std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-3) | (std < 1e-3))


def test_bad_clip_in_folder_is_reported_and_skipped(dog_clip_paths, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for p in dog_clip_paths[:2]:
        (folder / p.name).symlink_to(p)
    (folder / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
    config = default.get_config().data
    config.update(source="bvh", path=str(folder))
    d = build_dataset(config, progress=False, use_cache=False)
    assert len(d.clip_names) == 2 and "broken.bvh" in d.skipped and "broken.bvh" in d.skipped["broken.bvh"]
    config.on_bad_clip = "raise"
    with pytest.raises(MotionDataError, match="broken.bvh"):
        build_dataset(config, progress=False, use_cache=False)
    # A dataset cached by a "skip" run must not hide the bad clip from a "raise" run.
    config.update(on_bad_clip="skip", cache_dir=str(tmp_path / "cache"))
    assert "broken.bvh" in build_dataset(config, progress=False).skipped
    config.on_bad_clip = "raise"
    with pytest.raises(MotionDataError, match="broken.bvh.*on_bad_clip='raise'"):
        build_dataset(config, progress=False)
    with pytest.raises(MotionDataError, match="does not exist"):
        build_dataset(_bvh_config(tmp_path / "missing"), use_cache=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MotionDataError, match="no .bvh files"):
        build_dataset(_bvh_config(tmp_path / "empty"), use_cache=False)


def _bvh_config(path):
    config = default.get_config().data
    config.update(source="bvh", path=str(path))
    return config
