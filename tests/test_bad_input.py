"""A corpus of broken inputs, each ending in its exact one-line error (or a clean skip), nothing written.

The broken clips are made here from one real dog clip (``../shared/data/mann_dog_bvh``; the tests
skip without it), never committed. Every case goes through the folder build twice: with
``data.on_bad_clip='raise'`` it must end in exactly the line the commands print (``error: <e>``,
:mod:`mann_jax.cli`) and leave the dataset cache as it was; with ``'skip'`` the good clip is built
and the bad one reported with the same message. Also here: the skeleton map, resampling to 60 fps,
and the workdir lock (docs/data_checks.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from configs import default
from mann_jax import workdir_lock
from mann_jax.config_errors import ConfigError
from mann_jax.data import checks, layout
from mann_jax.data import dataset as ds
from mann_jax.data.bvh import load_bvh, save_bvh
from mann_jax.data.errors import MotionDataError
from mann_jax.data.skeleton import Motion, Skeleton

REPO = Path(__file__).resolve().parents[1]
BASE_CLIP = "D1_010_KAN01_002"  # the shortest real clip (155 frames at 60 fps): fast to featurise
SKELETON_HINT = ("(the features need its 27 points; another quadruped of the same topology: map its joint names "
                 "with data.joint_map)")


# ----------------------------------------------------------------------------- making broken clips


@pytest.fixture(scope="module")
def base_text(dog_bvh_dir: Path) -> str:
    path = dog_bvh_dir / f"{BASE_CLIP}.bvh"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path.read_text()


def _motion_line(text: str) -> int:
    """0-based index of the MOTION line."""
    return next(i for i, line in enumerate(text.splitlines()) if line.strip() == "MOTION")


def frame_line(text: str, frame: int) -> int:
    """1-based file line of ``frame`` (MOTION, Frames:, Frame Time:, then one line per frame)."""
    return _motion_line(text) + 4 + frame


def frames_of(text: str) -> tuple[list[str], list[str]]:
    """(header lines up to MOTION inclusive, frame lines)."""
    lines = text.splitlines()
    m = _motion_line(text)
    return lines[: m + 1], lines[m + 3:]


def with_frames(text: str, frames: list[str], frame_time: str = "0.0166667") -> str:
    header, _ = frames_of(text)
    return "\n".join([*header, f"Frames: {len(frames)}", f"Frame Time: {frame_time}", *frames]) + "\n"


def column(text: str, joint: str, channel: str) -> int:
    """0-based frame column of ``joint``'s ``channel`` (e.g. ``Xposition``)."""
    start, current = 0, None
    for line in frames_of(text)[0]:
        words = line.split()
        if words[:1] in (["ROOT"], ["JOINT"]):
            current = words[1]
        elif words[:1] == ["CHANNELS"]:
            if current == joint:
                return start + words[2:].index(channel)
            start += int(words[1])
    raise KeyError(joint)


def set_value(text: str, frames: range | list[int], col: int, value: Callable[[float], str]) -> str:
    header, lines = frames_of(text)
    for f in frames:
        words = lines[f].split()
        words[col] = value(float(words[col]))
        lines[f] = " ".join(words)
    return with_frames(text, lines, frame_time=text.splitlines()[_motion_line(text) + 2].split(":", 1)[1].strip())


def rename(text: str, old: str, new: str) -> str:
    return re.sub(rf"\b(ROOT|JOINT) {old}\b", rf"\1 {new}", text)


def other_character(frames: int = 200) -> str:
    """A two-joint character (not a dog), 60 fps."""
    rows = "\n".join("0 50 0 0 0 0 0 0 0" for _ in range(frames))
    return ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation "
            "Yrotation\n  JOINT Spine\n  {\n    OFFSET 10 0 0\n    CHANNELS 3 Zrotation Xrotation Yrotation\n"
            "    End Site\n    {\n      OFFSET 0 5 0\n    }\n  }\n}\n"
            f"MOTION\nFrames: {frames}\nFrame Time: 0.0166667\n{rows}\n")


def data_config(folder: Path, cache: Path, **overrides) -> object:
    config = default.get_config().data
    config.update(source="bvh", path=str(folder), cache_dir=str(cache), mirror=False, **overrides)
    return config


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))} if folder.exists() else {}


def refusal(tmp_path: Path, base_text: str, bad: str | bytes, **overrides) -> tuple[str, Path]:
    """The error line of a folder holding the base clip and ``bad``, built with on_bad_clip='raise';
    checks the cache is left as it was and that 'skip' builds the good clip and reports the same message."""
    folder, cache = tmp_path / "clips", tmp_path / "cache"
    folder.mkdir()
    (folder / "good.bvh").write_text(base_text)
    path = folder / "bad.bvh"
    path.write_bytes(bad) if isinstance(bad, bytes) else path.write_text(bad)
    before = snapshot(cache)
    with pytest.raises(MotionDataError) as info:
        ds.build_dataset(data_config(folder, cache, on_bad_clip="raise", **overrides), progress=False)
    assert snapshot(cache) == before, "a refused clip changed the dataset cache"
    skipped = ds.build_dataset(data_config(folder, cache, **overrides), progress=False, use_cache=False)
    assert skipped.clip_names == ("good",) and skipped.skipped == {"bad.bvh": str(info.value)}
    return f"error: {info.value}", path


# ----------------------------------------------------------------------------- the corpus


def test_renamed_joint_is_named_missing_and_extra(tmp_path, base_text):
    line, path = refusal(tmp_path, base_text, rename(base_text, "LeftArm", "LeftUpperArm"))
    assert line == (f"error: {path}: skeleton is not the MANN dog's: missing 'LeftArm'; extra 'LeftUpperArm' "
                    f"{SKELETON_HINT}")


def test_renamed_joint_takes_its_end_site_along(tmp_path, base_text):
    line, path = refusal(tmp_path, base_text, rename(base_text, "Head", "Skull"))
    assert line == (f"error: {path}: skeleton is not the MANN dog's: missing 'Head', 'HeadSite'; "
                    f"extra 'Skull', 'SkullSite' {SKELETON_HINT}")


def test_another_character_lists_the_first_missing_joints(tmp_path, base_text):
    line, path = refusal(tmp_path, base_text, other_character())
    assert line == (f"error: {path}: skeleton is not the MANN dog's: missing 'Spine1', 'Neck', 'Head', 'HeadSite', "
                    "'LeftShoulder', 'LeftArm', 'LeftForeArm', 'LeftHand' and 17 more; extra 'SpineSite' "
                    f"{SKELETON_HINT}")


def test_joint_under_another_parent(tmp_path, base_text):
    swapped = rename(rename(rename(base_text, "Tail", "TMP"), "LeftShoulder", "Tail"), "TMP", "LeftShoulder")
    line, path = refusal(tmp_path, base_text, swapped)
    assert line == f"error: {path}: skeleton is not the MANN dog's: 'Tail' hangs off 'Spine1', in the dog off 'Hips'"


def test_absurd_position_names_file_line_and_frame(tmp_path, base_text):
    bad = set_value(base_text, [50], column(base_text, "Hips", "Xposition"), lambda v: "1e30")
    line, path = refusal(tmp_path, base_text, bad)
    assert line == (f"error: {path}:{frame_line(base_text, 50)}: frame 50: 'Hips' is 1e+28 m from the origin "
                    "(data.checks.max_position is 1000 m)")


def test_teleport(tmp_path, base_text):
    n = len(frames_of(base_text)[1])
    bad = set_value(base_text, range(80, n), column(base_text, "Hips", "Xposition"), lambda v: f"{v + 10000:.6f}")
    line, path = refusal(tmp_path, base_text, bad)
    # 100 m (+ the clip's own step, < 0.1 m) in 1/60 s.
    assert line == (f"error: {path}:{frame_line(base_text, 80)}: frame 80: the root ('Hips') jumps 100 m from frame 79 "
                    "(6e+03 m/s; data.checks.max_root_speed is 20 m/s): a teleport or a corrupt frame")


def test_corrupt_rotation_moves_the_body_too_fast(tmp_path, base_text):
    col = column(base_text, "Hips", "Yrotation")  # the dog faces backwards for one frame
    bad = set_value(base_text, [60], col, lambda v: f"{v + 180:.6f}")
    line, path = refusal(tmp_path, base_text, bad)
    match = re.fullmatch(rf"error: {re.escape(str(path))}:{frame_line(base_text, 60)}: frame 60: '(\w+)' moves "
                         r"([0-9.]+) m relative to the hips from frame 59 \(([0-9.e+]+) m/s; "
                         r"data\.checks\.max_joint_speed is 20 m/s\): a corrupt rotation or offset", line)
    assert match, line
    # Spine, Spine1 and Neck turn half a circle about the hips: the first of them past 20 m/s is named.
    assert match[1] in ("Spine", "Spine1", "Neck")
    assert float(match[3]) > 20 and float(match[3]) == pytest.approx(float(match[2]) * 60, rel=0.01)


def test_thresholds_are_configurable(tmp_path, base_text):
    path = tmp_path / "walk.bvh"
    path.write_text(base_text)
    with pytest.raises(MotionDataError) as info:  # the dog walks faster than 0.5 m/s
        ds.clip_rows(load_bvh(path), data_config(tmp_path, tmp_path, checks={"max_root_speed": 0.5}), source=path)
    match = re.fullmatch(rf"{re.escape(str(path))}:(\d+): frame (\d+): the root \('Hips'\) jumps [0-9.]+ m from frame "
                         r"(\d+) \(([0-9.]+) m/s; data\.checks\.max_root_speed is 0\.5 m/s\): "
                         r"a teleport or a corrupt frame",
                         str(info.value))
    assert match, str(info.value)
    line, frame, previous, speed = int(match[1]), int(match[2]), int(match[3]), float(match[4])
    assert line == frame_line(base_text, frame) and previous == frame - 1 and speed > 0.5
    with pytest.raises(ConfigError, match=r"^config data.checks.max_joint_speed must be a positive number, got -1.0$"):
        checks.limits_from(data_config(tmp_path, tmp_path, checks={"max_joint_speed": -1.0}))


def test_one_frame_at_another_rate_cannot_be_resampled(tmp_path, base_text):
    line, path = refusal(tmp_path, base_text, with_frames(base_text, frames_of(base_text)[1][:1], "0.0333333"))
    assert line == f"error: {path}: cannot resample a clip of 1 frame to 60 fps"


def test_too_short_after_resampling(tmp_path, base_text):
    line, path = refusal(tmp_path, base_text, with_frames(base_text, frames_of(base_text)[1][:100:2], "0.0333333"))
    assert line == (f"error: {path}: clip has 99 frames at 60 fps (resampled from 50 at 30 fps); the trajectory "
                    "window needs at least 122")


# The earlier kinds (parser and length), made from the same real clip.
EARLIER = {
    "empty": (lambda t: "", lambda t, p: f"error: {p}: file is empty"),
    "not text": (lambda t: b"\x89PNG\r\n\x1a\n",
                 lambda t, p: f"error: {p}: not a text file (invalid start byte at byte 0)"),
    "no MOTION": (lambda t: "\n".join(frames_of(t)[0][:-1]) + "\n",
                  lambda t, p: f"error: {p}: no MOTION section: the file has no frame data (truncated?)"),
    "truncated": (lambda t: "\n".join(t.splitlines()[:-5]) + "\n",
                  lambda t, p: f"error: {p}:{frame_line(t, -2)}: file is truncated: 'Frames: 155' but only 150 frame "
                               "lines follow"),
    "NaN": (lambda t: set_value(t, [10], 3, lambda v: "nan"),
            lambda t, p: f"error: {p}:{frame_line(t, 10)}: non-finite value nan in column 4 of the frame"),
    "non-numeric": (lambda t: set_value(t, [3], 5, lambda v: "9O"),
                    lambda t, p: f"error: {p}:{frame_line(t, 3)}: non-numeric value '9O' in column 6 of the frame"),
    "bad frame time": (lambda t: t.replace("Frame Time:\t0.0166667", "Frame Time: 0"),
                       lambda t, p: f"error: {p}:{frame_line(t, -1)}: 'Frame Time:' must be a positive number of "
                                    "seconds, found '0'"),
    "too short": (lambda t: with_frames(t, frames_of(t)[1][:100]),
                  lambda t, p: f"error: {p}: clip has 100 frames; the trajectory window needs at least 122"),
}


@pytest.mark.parametrize("kind", list(EARLIER))
def test_earlier_kinds_of_bad_clip(tmp_path, base_text, kind):
    make, expected = EARLIER[kind]
    line, path = refusal(tmp_path, base_text, make(base_text))
    assert line == expected(base_text, path)


def test_folder_errors(tmp_path, base_text):
    with pytest.raises(MotionDataError) as info:
        ds.build_dataset(data_config(tmp_path / "nope", tmp_path / "cache"), progress=False)
    assert f"error: {info.value}" == f"error: {tmp_path / 'nope'}: folder does not exist"
    (tmp_path / "empty").mkdir()
    with pytest.raises(MotionDataError) as info:
        ds.build_dataset(data_config(tmp_path / "empty", tmp_path / "cache"), progress=False)
    assert f"error: {info.value}" == f"error: {tmp_path / 'empty'}: folder contains no .bvh files"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.bvh").write_text("")
    with pytest.raises(MotionDataError) as info:
        ds.build_dataset(data_config(tmp_path / "bad", tmp_path / "cache"), progress=False)
    reason = json.dumps({"x.bvh": f"{tmp_path / 'bad' / 'x.bvh'}: file is empty"})
    assert f"error: {info.value}" == f"error: <data>: no usable clips: every clip was skipped {reason}"
    assert not (tmp_path / "cache").exists()


def test_a_refused_clip_leaves_an_earlier_cache_alone(tmp_path, base_text):
    folder, cache = tmp_path / "clips", tmp_path / "cache"
    folder.mkdir()
    (folder / "good.bvh").write_text(base_text)
    first = ds.build_dataset(data_config(folder, cache), progress=False)
    before = snapshot(cache)
    assert len(before) == 1
    (folder / "bad.bvh").write_text(rename(base_text, "Neck", "Collar"))
    with pytest.raises(MotionDataError, match="missing 'Neck'"):
        ds.build_dataset(data_config(folder, cache, on_bad_clip="raise"), progress=False)
    assert snapshot(cache) == before
    skipped = ds.build_dataset(data_config(folder, cache), progress=False)  # a new key: the folder changed
    np.testing.assert_array_equal(skipped.inputs, first.inputs)
    assert set(skipped.skipped) == {"bad.bvh"}
    assert {k: v for k, v in snapshot(cache).items() if k in before} == before


# ----------------------------------------------------------------------------- another quadruped


def test_joint_map_renames_another_quadruped_to_the_dog(tmp_path, base_text):
    folder, cache = tmp_path / "clips", tmp_path / "cache"
    folder.mkdir()
    (folder / "dog.bvh").write_text(base_text)
    renamed = rename(rename(base_text, "Head", "Skull"), "LeftUpLeg", "Thigh L")
    (folder / "other.bvh").write_text(renamed)
    config = data_config(folder, cache, on_bad_clip="raise", joint_map={"Skull": "Head", "Thigh L": "LeftUpLeg"})
    built = ds.build_dataset(config, progress=False, use_cache=False)
    dog, other = (np.flatnonzero(built.clip_index == built.clip_names.index(n)) for n in ("dog", "other"))
    np.testing.assert_array_equal(built.inputs[dog], built.inputs[other])
    np.testing.assert_array_equal(built.outputs[dog], built.outputs[other])
    with pytest.raises(MotionDataError, match=r"data.joint_map gives two joints the name\(s\) 'Head'$"):
        ds.clip_rows(load_bvh(folder / "dog.bvh"), data_config(folder, cache, joint_map={"Neck": "Head"}))


def _reordered(motion: Motion) -> Motion:
    """The same dog with the tail's points listed before the legs' (still depth-first)."""
    order = [*range(16), 24, 25, 26, *range(16, 24)]
    new_index = {old: new for new, old in enumerate(order)}
    sk = motion.skeleton
    parents = np.array([-1 if sk.parents[o] < 0 else new_index[int(sk.parents[o])] for o in order])
    skeleton = Skeleton(names=tuple(sk.names[o] for o in order), parents=parents, offsets=sk.offsets[order],
                        is_end_site=sk.is_end_site[order])
    return Motion(motion.name, skeleton, motion.local_rotations[:, order], motion.local_translations[:, order],
                  motion.frame_time)


def test_points_in_another_depth_first_order_give_the_same_rows(tmp_path, base_text):
    (tmp_path / "a.bvh").write_text(base_text)
    motion = load_bvh(tmp_path / "a.bvh")
    save_bvh(motion, tmp_path / "same.bvh")
    save_bvh(_reordered(motion), tmp_path / "reordered.bvh")
    reordered = load_bvh(tmp_path / "reordered.bvh")
    assert reordered.skeleton.names != layout.BONES
    config = default.get_config().data
    a, b = ds.clip_rows(load_bvh(tmp_path / "same.bvh"), config), ds.clip_rows(reordered, config)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.outputs, b.outputs)


def test_non_finite_and_non_unit_rotations(base_text, tmp_path):
    (tmp_path / "a.bvh").write_text(base_text)
    motion = load_bvh(tmp_path / "a.bvh")
    rotations = motion.local_rotations.copy()
    rotations[7, 1] = np.nan
    bad = Motion(motion.name, motion.skeleton, rotations, motion.local_translations, motion.frame_time)
    with pytest.raises(MotionDataError) as info:
        checks.check_motion(bad, source="clip.npz")
    assert str(info.value) == "clip.npz: frame 7: 'Spine' has a NaN or infinite rotation"
    rotations[7, 1] = [0.0, 0.0, 0.0, 2.0]
    bad = Motion(motion.name, motion.skeleton, rotations, motion.local_translations, motion.frame_time,
                 frame_line=motion.frame_line)
    with pytest.raises(MotionDataError) as info:
        checks.check_motion(bad, source="clip.bvh")
    assert str(info.value) == (f"clip.bvh:{frame_line(base_text, 7)}: frame 7: 'Spine' has a rotation that is not a "
                               "unit quaternion (norm 2)")


def test_every_real_and_synthetic_clip_passes_the_checks(dog_clip_paths):
    from mann_jax.data.synthetic import generate_default_clips

    for path in dog_clip_paths:
        motion = checks.conform_skeleton(load_bvh(path), source=path)
        checks.check_motion(motion, source=path)
        assert not checks.needs_resampling(motion), path
    for clip in generate_default_clips(seed=0, num_clips=2, seconds_per_clip=5.0):
        checks.check_motion(checks.conform_skeleton(clip.motion))
        assert not checks.needs_resampling(clip.motion)


# ----------------------------------------------------------------------------- frame rate


def test_a_30_fps_copy_gives_rows_close_to_the_60_fps_original(dog_bvh_dir, tmp_path, monkeypatch):
    """Rows of a clip and of its 30 fps copy (every other frame) resampled to 60 fps, at the same frames.

    Tolerances (99th percentile of |difference|, 3 to 20 times what this walk clip gives) and why: the
    trajectory is the root Gaussian-smoothed over 6 frames, so the interpolated frames barely move it
    (1 cm, 0.01 for unit directions and m/s); half the bone blocks are of frames the copy does not
    have (input bones are frame t - 1), which slerp/lerp rebuild from neighbours 1/30 s apart: bone
    positions within 1 cm, axes within 0.02, and velocities (a one-frame difference) within 0.15 m/s.
    Without resampling (the rows before this check) the same comparison is off by far more, which the
    test checks too so that it can fail.
    """
    original_path = dog_bvh_dir / "D1_001_KAN01_001.bvh"
    text = original_path.read_text()
    copy = tmp_path / "thirty.bvh"
    copy.write_text(with_frames(text, frames_of(text)[1][::2], "0.0333333"))
    config = default.get_config().data
    config.mirror = False
    a, b = ds.clip_rows(load_bvh(original_path), config), ds.clip_rows(load_bvh(copy), config)
    assert a.source_fps is None and b.source_fps == pytest.approx(30.0, rel=1e-5)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert (a.styles == b.styles).mean() >= 0.99

    def p99(x: np.ndarray, y: np.ndarray, columns: list[int]) -> float:
        return float(np.percentile(np.abs(x[:, columns] - y[:, columns]), 99))

    def cols(block: Callable[[int, str], slice], count: int, field: str) -> list[int]:
        return [c for k in range(count) for c in range(block(k, field).start, block(k, field).stop)]

    trajectory = {f: cols(layout.input_sample, layout.NUM_TRAJECTORY_SAMPLES, f)
                  for f in ("pos", "dir", "vel", "speed")}
    bones = {f: cols(layout.input_bone, layout.NUM_BONES, f) for f in layout.BONE_FIELDS}
    for field, columns in trajectory.items():
        assert p99(a.inputs, b.inputs, columns) <= 0.01, field
    for field, tolerance in {"pos": 0.01, "fwd": 0.02, "up": 0.02, "vel": 0.15}.items():
        assert p99(a.inputs, b.inputs, bones[field]) <= tolerance, field
        out = [c + layout.OUTPUT_BONES.start - layout.INPUT_BONES.start for c in bones[field]]
        assert p99(a.outputs, b.outputs, out) <= tolerance, field
    assert p99(a.outputs, b.outputs, [360, 362]) <= 0.01 and p99(a.outputs, b.outputs, [361]) <= 0.5  # m/s, deg/s

    # The same clip featurised at its recorded 30 fps (no resampling): its frame t/2 is the time of frame t.
    monkeypatch.setattr(checks, "needs_resampling", lambda motion, fps=60.0: False)
    naive = ds.clip_rows(load_bvh(copy), config)
    times = np.intersect1d(a.frames, 2 * naive.frames)
    ia, ib = np.searchsorted(a.frames, times), np.searchsorted(2 * naive.frames, times)
    assert p99(a.inputs[ia], naive.inputs[ib], trajectory["pos"]) > 0.1


def test_resample_keeps_the_recorded_frames_and_the_duration(tmp_path, base_text):
    (tmp_path / "a.bvh").write_text(base_text)
    motion = load_bvh(tmp_path / "a.bvh")
    thirty = Motion(motion.name, motion.skeleton, motion.local_rotations[::2], motion.local_translations[::2],
                    1 / 30)
    back = checks.resample(thirty)
    assert back.num_frames == 2 * thirty.num_frames - 1 and back.frame_time == pytest.approx(1 / 60)
    np.testing.assert_allclose(back.local_rotations[::2], thirty.local_rotations, atol=1e-12)
    np.testing.assert_allclose(back.local_translations[::2], thirty.local_translations, atol=1e-12)
    mid = back.local_translations[1::2, 0]
    np.testing.assert_allclose(mid, (thirty.local_translations[:-1, 0] + thirty.local_translations[1:, 0]) / 2)


# ----------------------------------------------------------------------------- the workdir lock


def test_second_writer_is_refused_and_the_lock_released(tmp_path):
    (tmp_path / "run").mkdir()
    with workdir_lock.hold(tmp_path / "run") as path:
        record = json.loads(path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(workdir_lock.WorkdirLocked) as info:
            with workdir_lock.hold(tmp_path / "run"):
                pass
        assert str(info.value) == (f"{tmp_path / 'run'}: another process writes into this workdir: pid {os.getpid()} "
                                   f"on host {socket.gethostname()} ({record['command']}); wait for it to end or use "
                                   "another --workdir")
    assert path.read_text() == ""
    with workdir_lock.hold(tmp_path / "run"):
        pass
    with workdir_lock.hold(tmp_path / "other", enabled=False) as nothing:
        assert nothing is None and not (tmp_path / "other").exists()
    # A workdir the lock created is removed again when the command wrote nothing there; kept otherwise.
    with workdir_lock.hold(tmp_path / "new" / "run"):
        assert (tmp_path / "new" / "run" / ".lock").is_file()
    assert not (tmp_path / "new").exists()
    with workdir_lock.hold(tmp_path / "new" / "run"):
        (tmp_path / "new" / "run" / "config.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "new" / "run").iterdir()) == [".lock", "config.json"]
    (tmp_path / "file").write_text("")
    with pytest.raises(workdir_lock.WorkdirError, match=r"file: the workdir is a file, not a folder$"):
        with workdir_lock.hold(tmp_path / "file"):
            pass


HOLDER = ("import sys, time\nfrom mann_jax import workdir_lock\n"
          "with workdir_lock.hold(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


@pytest.fixture
def holder(tmp_path):
    """A process holding ``tmp_path/run``'s lock; killed (SIGKILL) at the end if still running."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_killed_holders_lock_is_taken_over(tmp_path, holder, caplog):
    holder_text = rf"pid {holder.pid} on host {re.escape(socket.gethostname())}"
    with pytest.raises(workdir_lock.WorkdirLocked, match=holder_text):
        with workdir_lock.hold(tmp_path / "run"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING, logger="mann_jax.workdir_lock"):
        with workdir_lock.hold(tmp_path / "run") as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"taking over a lock left by pid {holder.pid} on host {socket.gethostname()}" in caplog.text


WRITERS: dict[str, Callable[[Path], list[str]]] = {
    "train": lambda run: ["-m", "experiments.train", "--config", "configs/default.py:runlocal", "--workdir", str(run)],
    "sweep": lambda run: ["-m", "experiments.sweep", "--config", "configs/sweep.py:runlocal", "--workdir", str(run)],
    "study": lambda run: ["-m", "experiments.ablation", "--config", "configs/study.py:toy", "--workdir", str(run)],
    "export into the run": lambda run: ["-m", "experiments.export", "--checkpoint", str(run), "--out",
                                        str(run / "model.npz")],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(WRITERS))
def test_a_second_writer_command_gets_one_error_line(tmp_path, holder, command):
    run = tmp_path / "run"
    before = sorted(p.name for p in run.iterdir())
    proc = subprocess.run([sys.executable, *WRITERS[command](run)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    holder_command = f"-c {run}"
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {run}: another process writes into this workdir: pid {holder.pid} on host {socket.gethostname()} "
        f"({holder_command}); wait for it to end or use another --workdir")
    assert "Traceback" not in proc.stderr and sorted(p.name for p in run.iterdir()) == before


@pytest.mark.slow
def test_prepare_data_refuses_a_bad_clip_and_skips_it(tmp_path, base_text):
    folder, cache = tmp_path / "clips", tmp_path / "cache"
    folder.mkdir()
    (folder / "good.bvh").write_text(base_text)
    (folder / "thirty.bvh").write_text(with_frames(base_text, frames_of(base_text)[1][::2], "0.0333333"))
    (folder / "bad.bvh").write_text(rename(base_text, "LeftArm", "LeftUpperArm"))
    args = [sys.executable, "-m", "experiments.prepare_data", "--config", "configs/dog.py",
            f"--config.data.path={folder}", f"--config.data.cache_dir={cache}"]
    proc = subprocess.run([*args, "--config.data.on_bad_clip=raise"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (  # after the progress bar
        f"error: {folder / 'bad.bvh'}: skeleton is not the MANN dog's: missing 'LeftArm'; extra 'LeftUpperArm' "
        f"{SKELETON_HINT}")
    assert "Traceback" not in proc.stderr and not cache.exists()
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (f"skipped     bad.bvh: {folder / 'bad.bvh'}: skeleton is not the MANN dog's: missing 'LeftArm'"
            in proc.stdout)
    assert "resampled   thirty: recorded at 30 fps, resampled to 60 fps (slerp; positions linearly)" in proc.stdout
    assert "clips       2 " in proc.stdout


@pytest.mark.slow
def test_an_export_elsewhere_only_reads_the_run(tmp_path, holder):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "experiments.export", "--checkpoint", str(run), "--out",
                           str(tmp_path / "model.npz")], cwd=REPO, capture_output=True, text=True, timeout=300)
    # Not refused for the lock: it goes on to read the run, which holds no config.json here.
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"error: {run / 'config.json'}: not found (is {run} a training workdir?)")


def test_a_replay_of_a_30_fps_clip_follows_the_60_fps_original(dog_bvh_dir, tmp_path):
    from mann_jax.control.rollout import replay_from_motion

    text = (dog_bvh_dir / "D1_001_KAN01_001.bvh").read_text()
    (tmp_path / "sixty.bvh").write_text(text)
    (tmp_path / "thirty.bvh").write_text(with_frames(text, frames_of(text)[1][::2], "0.0333333"))
    config = default.get_config().data
    a, b = (replay_from_motion(load_bvh(tmp_path / f"{n}.bvh"), config) for n in ("sixty", "thirty"))
    np.testing.assert_array_equal(a.frames, b.frames)
    # The root path integrates the root updates at 60 fps; taken at 30 fps it would cover half the distance
    # (the dog walks more than half a metre here, so that would be off by more than 25 cm, not 1 cm).
    walked = np.linalg.norm(np.diff(a.reference_root_positions, axis=0), axis=-1).sum()
    assert walked > 0.5
    np.testing.assert_allclose(b.reference_root_positions, a.reference_root_positions, atol=0.01)
