"""Tests of the BVH reader/writer (mann_jax.data.bvh)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mann_jax.data import layout
from mann_jax.data.bvh import format_bvh, load_bvh, parse_bvh, save_bvh
from mann_jax.data.errors import MotionDataError
from mann_jax.data.skeleton import Motion, forward_kinematics

# A root, one joint and an End Site. Line numbers (1-based) are used by the error tests.
BASE = """\
HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 10 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0166667
100 50 -20 0 0 0 0 0 0
100 50 -20 0 0 90 90 0 0
"""
NUM_CHANNELS = 9
FIRST_FRAME_LINE = 19


def _edit(text: str, replace: dict[int, str | None]) -> str:
    """Replace (or delete, with None) 1-based lines of ``text``."""
    lines = text.splitlines()
    for number in sorted(replace, reverse=True):
        if replace[number] is None:
            del lines[number - 1]
        else:
            lines[number - 1] = replace[number]
    return "\n".join(lines) + "\n"


def _rot(axis: str, degrees: float) -> np.ndarray:
    """Elementary rotation matrix, written out by hand (independent of scipy)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return {
        "X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _matrices(motion: Motion) -> np.ndarray:
    t, j = motion.local_rotations.shape[:2]
    return Rotation.from_quat(motion.local_rotations.reshape(-1, 4)).as_matrix().reshape(t, j, 3, 3)


# --------------------------------------------------------------------------------------------
# Parsing small hand-written files


def test_base_skeleton_and_fk():
    motion = parse_bvh(BASE)
    skel = motion.skeleton
    assert skel.names == ("Hips", "Spine", "SpineSite")
    assert skel.parents.tolist() == [-1, 0, 1]
    assert skel.is_end_site.tolist() == [False, False, True]
    np.testing.assert_allclose(skel.offsets, [[0, 0, 0], [0.1, 0, 0], [0, 0.05, 0]])
    assert motion.frame_time == pytest.approx(0.0166667)
    assert motion.name == "motion"
    assert motion.local_rotations.shape == (2, 3, 4)
    assert motion.local_translations.shape == (2, 3, 3)
    assert motion.local_translations.dtype == np.float64
    # End Site rotation is the identity.
    np.testing.assert_allclose(motion.local_rotations[:, 2], [[0, 0, 0, 1]] * 2)

    pos = forward_kinematics(motion).positions
    # Frame 0: no rotation.
    np.testing.assert_allclose(pos[0], [[1.0, 0.5, -0.2], [1.1, 0.5, -0.2], [1.1, 0.55, -0.2]], atol=1e-12)
    # Frame 1: root Ry(90) sends +x to -z; Spine Rz(90) sends +y to -x, then Ry(90) sends -x to +z.
    np.testing.assert_allclose(pos[1], [[1.0, 0.5, -0.2], [1.0, 0.5, -0.3], [1.0, 0.5, -0.25]], atol=1e-12)


def test_scale_is_applied_to_offsets_and_positions():
    motion = parse_bvh(BASE, scale=1.0)
    np.testing.assert_allclose(motion.skeleton.offsets[1], [10, 0, 0])
    np.testing.assert_allclose(motion.local_translations[0, 0], [100, 50, -20])


@pytest.mark.parametrize("order", ["".join(p) for p in itertools.permutations("XYZ")])
def test_any_rotation_channel_order(order):
    """Local R is the product of the elementary rotations in the listed order."""
    channels = " ".join(f"{axis}rotation" for axis in order)
    rng = np.random.default_rng(sum(map(ord, order)))
    angles = np.round(rng.uniform(-170, 170, size=(3, 2, 3)), 4)  # frames x joints x channels
    root_pos = np.round(rng.uniform(-100, 100, size=(3, 3)), 4)
    text = f"""HIERARCHY
ROOT Root
{{
  OFFSET 1 2 3
  CHANNELS 6 Xposition Yposition Zposition {channels}
  JOINT Arm
  {{
    OFFSET 0 0 20
    CHANNELS 3 {channels}
    End Site
    {{
      OFFSET 7 -3 2
    }}
  }}
}}
MOTION
Frames: 3
Frame Time: 0.02
"""
    text += "".join(" ".join(f"{v:.4f}" for v in [*root_pos[t], *angles[t].ravel()]) + "\n" for t in range(3))
    motion = parse_bvh(text)
    local = _matrices(motion)
    pos = forward_kinematics(motion).positions
    for t in range(3):
        r_root, r_arm = (_rot(order[0], a) @ _rot(order[1], b) @ _rot(order[2], c) for a, b, c in angles[t])
        np.testing.assert_allclose(local[t, 0], r_root, atol=1e-12)
        np.testing.assert_allclose(local[t, 1], r_arm, atol=1e-12)
        p_root = root_pos[t] * 0.01
        p_arm = p_root + r_root @ np.array([0, 0, 0.2])
        p_site = p_arm + r_root @ r_arm @ np.array([0.07, -0.03, 0.02])
        np.testing.assert_allclose(pos[t], [p_root, p_arm, p_site], atol=1e-12)
    # scipy's intrinsic upper-case convention agrees.
    expected = Rotation.from_euler(order, angles.reshape(-1, 3), degrees=True).as_matrix()
    np.testing.assert_allclose(local[:, :2].reshape(-1, 3, 3), expected, atol=1e-12)
    # Quaternions are canonical (w >= 0) and unit length.
    assert (motion.local_rotations[..., 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(motion.local_rotations, axis=-1), 1.0, atol=1e-12)


def test_fewer_than_three_rotation_channels():
    text = _edit(BASE, {
        9: "    CHANNELS 2 Yrotation Xrotation",
        19: "1 2 3 0 0 0 30 40",
        20: "1 2 3 0 0 0 -10 0",
    })
    motion = parse_bvh(text)
    np.testing.assert_allclose(_matrices(motion)[0, 1], _rot("Y", 30) @ _rot("X", 40), atol=1e-12)
    np.testing.assert_allclose(_matrices(motion)[1, 1], _rot("Y", -10), atol=1e-12)


def test_joint_with_position_channels_uses_them_instead_of_offset():
    text = _edit(BASE, {
        9: "    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
        19: "100 50 -20 0 0 0 0 20 0 0 0 0",
        20: "100 50 -20 0 0 90 1 2 3 90 0 0",
    })
    motion = parse_bvh(text)
    np.testing.assert_allclose(motion.skeleton.offsets[1], [0.1, 0, 0])  # the OFFSET is kept
    np.testing.assert_allclose(motion.local_translations[:, 1], [[0, 0.2, 0], [0.01, 0.02, 0.03]])
    pos = forward_kinematics(motion).positions
    np.testing.assert_allclose(pos[0, 1], [1.0, 0.7, -0.2], atol=1e-12)
    # Frame 1: Ry(90) maps (x, y, z) to (z, y, -x).
    np.testing.assert_allclose(pos[1, 1], [1.0 + 0.03, 0.5 + 0.02, -0.2 - 0.01], atol=1e-12)


def test_partial_position_channels_replace_only_those_components():
    text = _edit(BASE, {
        9: "    CHANNELS 4 Yposition Zrotation Xrotation Yrotation",
        19: "100 50 -20 0 0 0 7 0 0 0",
        20: "100 50 -20 0 0 0 9 0 0 0",
    })
    motion = parse_bvh(text)
    np.testing.assert_allclose(motion.local_translations[:, 1], [[0.1, 0.07, 0], [0.1, 0.09, 0]])


def test_tolerates_crlf_tabs_whitespace_and_trailing_blank_lines():
    messy = "\r\n".join("\t  " + line.replace(" ", " \t ") + "  " for line in BASE.splitlines())
    messy += "\r\n\r\n  \r\n\t\r\n"
    a, b = parse_bvh(BASE), parse_bvh(messy)
    assert a.skeleton.names == b.skeleton.names
    np.testing.assert_array_equal(a.local_rotations, b.local_rotations)
    np.testing.assert_array_equal(a.local_translations, b.local_translations)
    assert a.frame_time == b.frame_time


def test_load_bvh_names_the_motion_after_the_file(tmp_path):
    path = tmp_path / "walk_01.bvh"
    path.write_text(BASE)
    assert load_bvh(path).name == "walk_01"
    assert parse_bvh(BASE, path=path).name == "walk_01"


# --------------------------------------------------------------------------------------------
# Writing


def _assert_same_motion(a: Motion, b: Motion, atol: float = 1e-6) -> None:
    assert a.skeleton.names == b.skeleton.names
    np.testing.assert_array_equal(a.skeleton.parents, b.skeleton.parents)
    np.testing.assert_array_equal(a.skeleton.is_end_site, b.skeleton.is_end_site)
    np.testing.assert_allclose(a.skeleton.offsets, b.skeleton.offsets, atol=atol)
    np.testing.assert_allclose(a.local_translations, b.local_translations, atol=atol)
    np.testing.assert_allclose(_matrices(a), _matrices(b), atol=atol)
    assert a.frame_time == pytest.approx(b.frame_time, abs=1e-12)
    np.testing.assert_allclose(forward_kinematics(a).positions, forward_kinematics(b).positions, atol=atol)


@pytest.mark.parametrize("variant", ["base", "position_channels", "yxz_order"])
def test_round_trip(tmp_path, variant):
    text = {
        "base": BASE,
        "position_channels": _edit(BASE, {
            9: "    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
            19: "100 50 -20 0 0 0 0 20 0 0 0 0",
            20: "100 50 -20 10 20 90 1 2 3 90 -45 12.5",
        }),
        "yxz_order": _edit(BASE, {
            5: "  CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation",
            9: "    CHANNELS 3 Yrotation Xrotation Zrotation",
            19: "100 50 -20 10 20 30 -40 50 -60",
            20: "100 50 -20 170 -89 -120 90 90 90",
        }),
    }[variant]
    original = parse_bvh(text)
    path = tmp_path / "clip.bvh"
    save_bvh(original, path)
    again = load_bvh(path)
    _assert_same_motion(original, again)
    assert again.name == "clip"
    assert parse_bvh(format_bvh(original)).skeleton.names == original.skeleton.names


def test_format_bvh_writes_standard_channels():
    text = format_bvh(parse_bvh(BASE))
    assert "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" in text
    assert "CHANNELS 3 Zrotation Xrotation Yrotation" in text
    assert "End Site" in text
    assert "Frames: 2" in text


# --------------------------------------------------------------------------------------------
# Errors: every one names the file and, where it applies, the line.


def _error(tmp_path: Path, text: str, name: str = "bad.bvh") -> MotionDataError:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MotionDataError) as info:
        load_bvh(path)
    message = str(info.value)
    assert str(path) in message
    assert info.value.path == str(path)
    return info.value


def _assert_line(error: MotionDataError, line: int) -> None:
    assert error.line == line
    assert f".bvh:{line}:" in str(error)


@pytest.mark.parametrize("text", ["", "\n  \n\t\n"])
def test_error_empty_file(tmp_path, text):
    assert "empty" in _error(tmp_path, text).problem


def test_error_missing_hierarchy(tmp_path):
    err = _error(tmp_path, _edit(BASE, {1: None}))
    assert "HIERARCHY" in err.problem
    _assert_line(err, 1)


def test_error_missing_motion(tmp_path):
    err = _error(tmp_path, "\n".join(BASE.splitlines()[:15]) + "\n")
    assert "MOTION" in err.problem


def test_error_unclosed_brace(tmp_path):
    err = _error(tmp_path, _edit(BASE, {13: None}))  # End Site's closing brace
    assert "unbalanced braces" in err.problem
    _assert_line(err, 3)  # Hips' '{' is the one left open


def test_error_extra_closing_brace(tmp_path):
    err = _error(tmp_path, _edit(BASE, {15: "}\n}"}))
    assert "unbalanced braces" in err.problem
    _assert_line(err, 16)


def test_error_unexpected_token_in_hierarchy(tmp_path):
    err = _error(tmp_path, _edit(BASE, {8: "    OFSET 10 0 0"}))
    assert "'OFSET'" in err.problem
    _assert_line(err, 8)


def test_error_bad_channels_count(tmp_path):
    err = _error(tmp_path, _edit(BASE, {9: "    CHANNELS 3 Zrotation Xrotation"}))
    assert "CHANNELS says 3 but lists 2" in err.problem
    _assert_line(err, 9)


def test_error_unknown_channel_name(tmp_path):
    err = _error(tmp_path, _edit(BASE, {9: "    CHANNELS 3 Zrotation Wrotation Yrotation"}))
    assert "unknown channel name 'Wrotation'" in err.problem
    _assert_line(err, 9)


@pytest.mark.parametrize("line, expected", [
    ("Frame: 2", "Frames:"),
    ("Frames: many", "whole number"),
    ("Frames: -3", "negative"),
])
def test_error_bad_frames_line(tmp_path, line, expected):
    err = _error(tmp_path, _edit(BASE, {17: line}))
    assert expected in err.problem
    _assert_line(err, 17)


def test_error_missing_frames_line(tmp_path):
    err = _error(tmp_path, "\n".join(BASE.splitlines()[:16]) + "\n")
    assert "Frames:" in err.problem
    _assert_line(err, 16)


@pytest.mark.parametrize("line, expected", [
    ("Frame Time: 0", "positive"),
    ("Frame Time: -0.01", "positive"),
    ("Frame Time: nan", "positive"),
    ("Frame Time: fast", "must be a number"),
    ("FrameTime 0.1", "Frame Time:"),
])
def test_error_bad_frame_time(tmp_path, line, expected):
    err = _error(tmp_path, _edit(BASE, {18: line}))
    assert expected in err.problem
    _assert_line(err, 18)


def test_error_truncated_file(tmp_path):
    err = _error(tmp_path, _edit(BASE, {17: "Frames: 5"}))
    assert "truncated" in err.problem and "only 2 frame lines" in err.problem
    _assert_line(err, 17)


def test_error_extra_frame_lines(tmp_path):
    err = _error(tmp_path, _edit(BASE, {17: "Frames: 1"}))
    assert "more frame lines" in err.problem
    _assert_line(err, 20)


def test_error_wrong_number_of_values(tmp_path):
    err = _error(tmp_path, _edit(BASE, {20: "100 50 -20 0 0 90 90 0"}))
    assert f"8 values, expected {NUM_CHANNELS}" in err.problem
    _assert_line(err, 20)


def test_error_wrong_number_of_values_on_every_line(tmp_path):
    err = _error(tmp_path, _edit(BASE, {19: "1 2 3 4 5 6 7 8 9 10", 20: "1 2 3 4 5 6 7 8 9 10"}))
    assert f"10 values, expected {NUM_CHANNELS}" in err.problem
    _assert_line(err, FIRST_FRAME_LINE)


def test_error_truncated_last_line(tmp_path):
    err = _error(tmp_path, BASE[: BASE.rindex("90 0 0")])
    assert "values, expected" in err.problem
    _assert_line(err, 20)


def test_error_blank_line_inside_frames(tmp_path):
    err = _error(tmp_path, _edit(BASE, {17: "Frames: 3", 20: "\n100 50 -20 0 0 90 90 0 0"}))
    assert "blank line" in err.problem
    _assert_line(err, 20)


@pytest.mark.parametrize("value", ["9O", "1_0", "1,5", "--3"])
def test_error_non_numeric_value(tmp_path, value):
    err = _error(tmp_path, _edit(BASE, {20: f"100 50 -20 0 0 {value} 90 0 0"}))
    assert f"non-numeric value {value!r}" in err.problem and "column 6" in err.problem
    _assert_line(err, 20)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_error_non_finite_value(tmp_path, value):
    err = _error(tmp_path, _edit(BASE, {20: f"100 50 -20 0 0 90 {value} 0 0"}))
    assert "non-finite" in err.problem and "column 7" in err.problem
    _assert_line(err, 20)


def test_error_zero_frames(tmp_path):
    err = _error(tmp_path, _edit(BASE, {17: "Frames: 0", 19: None, 20: None}))
    assert "zero frames" in err.problem
    _assert_line(err, 17)


def test_error_without_path_says_data():
    with pytest.raises(MotionDataError, match=r"^<data>:20: "):
        parse_bvh(_edit(BASE, {20: "1 2"}))


def test_error_missing_file(tmp_path):
    with pytest.raises(MotionDataError, match="cannot read file"):
        load_bvh(tmp_path / "missing.bvh")


# --------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/data/mann_dog_bvh is absent)

DOG_POINTS = list(zip(layout.BONES, layout.BONE_PARENTS))
PAW_SITES = ("LeftHandSite", "RightHandSite", "LeftFootSite", "RightFootSite")


def _raised_floor(name: str) -> bool:
    """Clips whose floor is not at y = 0 everywhere (data README)."""
    return name == "D1_ex03_KAN02_006" or name.startswith("D1_ex04_")


@pytest.fixture(scope="module")
def dog_motions(dog_clip_paths) -> tuple[list[Motion], float]:
    """All real clips, parsed once per module, and the seconds that took."""
    start = time.perf_counter()
    motions = [load_bvh(path) for path in dog_clip_paths]
    return motions, time.perf_counter() - start


def test_real_clip_skeleton(dog_clip_paths):
    motion = load_bvh(dog_clip_paths[0])
    skel = motion.skeleton
    assert [(n, int(p)) for n, p in zip(skel.names, skel.parents)] == DOG_POINTS
    # The data README prints LeftShoulder(3)/RightShoulder(3) (Neck), but in every file the
    # shoulders are children of Spine1 (2), beside Neck; DOG_POINTS follows the files.
    assert skel.num_points == 27
    assert np.flatnonzero(skel.is_end_site).tolist() == [5, 10, 15, 19, 23, 26]
    assert motion.frame_time == pytest.approx(1 / 60, abs=1e-6)
    assert motion.fps == pytest.approx(60, abs=1e-3)


def test_real_clip_round_trip(dog_clip_paths, tmp_path):
    motion = load_bvh(dog_clip_paths[0])
    save_bvh(motion, tmp_path / "copy.bvh")
    _assert_same_motion(motion, load_bvh(tmp_path / "copy.bvh"))


def test_all_real_clips_parse(dog_motions, dog_clip_paths):
    motions, seconds = dog_motions
    assert len(motions) == len(dog_clip_paths)
    for motion in motions:
        assert motion.skeleton.num_points == 27, motion.name
        assert motion.num_frames > 100, motion.name
        assert motion.skeleton.names == motions[0].skeleton.names, motion.name
    print(f"parsed {len(motions)} clips, {sum(m.num_frames for m in motions)} frames in {seconds:.2f} s")


def test_real_paw_sites_touch_the_floor(dog_motions):
    motions, _ = dog_motions
    checked = 0
    for motion in motions:
        if _raised_floor(motion.name):
            continue
        pos = forward_kinematics(motion).positions
        heights = pos[:, [motion.skeleton.index(n) for n in PAW_SITES], 1]
        low = np.percentile(heights, 5, axis=0)
        # Measured: 5th percentiles lie in [-0.007, 0.026] m (front paw sites rest ~2 cm up).
        assert (np.abs(low) <= 0.04).all(), (motion.name, low)
        checked += 1
    assert checked >= 30
