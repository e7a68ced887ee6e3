"""Style labelling rule, smoothing, soft styles and label files."""

import numpy as np
import pytest

from mann_jax.data import styles as st
from mann_jax.data.errors import MotionDataError
from mann_jax.data.skeleton import Pose, Skeleton


def _skeleton() -> Skeleton:
    parents = {"Hips": -1, "Neck": 0, "LeftHandSite": 1, "RightHandSite": 1, "LeftUpLeg": 0, "LeftLeg": 4,
               "LeftFoot": 5, "LeftFootSite": 6}
    names = tuple(parents)
    offsets = np.zeros((len(names), 3))
    offsets[names.index("LeftLeg")] = [0.16, 0, 0]
    offsets[names.index("LeftFoot")] = [0.18, 0, 0]
    offsets[names.index("LeftFootSite")] = [0, -0.11, 0]
    return Skeleton(names=names, parents=np.array(list(parents.values())), offsets=offsets,
                    is_end_site=np.array([n.endswith("Site") for n in names]))


def _pose(hips_y, neck, front_y, t=100):
    sk = _skeleton()
    p = np.zeros((t, len(sk.names), 3))
    p[:, sk.index("Hips")] = [0, hips_y, 0]
    p[:, sk.index("Neck")] = neck
    p[:, sk.index("LeftHandSite")] = [0.4, front_y, 0.05]
    p[:, sk.index("RightHandSite")] = [0.4, front_y, -0.05]
    return sk, Pose(positions=p, rotations=np.broadcast_to(np.eye(3), p.shape + (3,)).copy())


def test_hind_leg_length():
    assert st.hind_leg_length(_skeleton()) == pytest.approx(0.16 + 0.18 + 0.11)


@pytest.mark.parametrize(
    "hips_y, neck, front_y, speed, expected",
    [
        (0.40, [0.4, 0.45, 0], 0.02, 0.0, st.IDLE),
        (0.40, [0.4, 0.45, 0], 0.02, 1.0, st.MOVE),
        (0.15, [0.3, 0.45, 0], 0.02, 0.0, st.SIT),  # hips low, spine pitched up ~56°
        (0.12, [0.4, 0.20, 0], 0.02, 0.0, st.LIE),  # hips low, spine nearly level
        (0.35, [0.1, 0.80, 0], 0.40, 0.0, st.STAND),  # reared up, front paws high
    ],
)
def test_rule_per_posture(hips_y, neck, front_y, speed, expected):
    sk, pose = _pose(hips_y, neck, front_y)
    labels = st.label_frames(pose, sk, speeds=np.full(100, speed), contacts=np.ones((100, 4), bool))
    assert (labels == expected).all(), np.bincount(labels)


def test_airborne_run_is_jump_with_margin():
    sk, pose = _pose(0.4, [0.4, 0.45, 0], 0.02)
    contacts = np.ones((100, 4), bool)
    contacts[50:56] = False
    rules = st.StyleRules(jump_margin=5, min_airborne=4)
    labels = st.label_frames(pose, sk, speeds=np.zeros(100), contacts=contacts, rules=rules)
    assert (labels[45:61] == st.JUMP).all()
    assert labels[44] == st.IDLE and labels[61] == st.IDLE
    contacts[:] = True
    contacts[50:52] = False  # too short to be a jump
    labels = st.label_frames(pose, sk, speeds=np.zeros(100), contacts=contacts, rules=rules)
    assert (labels != st.JUMP).all()


def test_majority_smoothing_removes_flicker_and_soft_styles_sum_to_one():
    labels = np.array([st.MOVE] * 30 + [st.IDLE] * 2 + [st.MOVE] * 30)
    smooth = st.majority_smooth(labels, 15)
    assert (smooth == st.MOVE).all()
    soft = st.soft_styles(np.array([st.IDLE] * 40 + [st.MOVE] * 40), 6.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert soft[0, st.IDLE] == pytest.approx(1.0) and soft[-1, st.MOVE] == pytest.approx(1.0)
    assert 0.3 < soft[40, st.MOVE] < 0.7  # blended at the transition


def test_label_file_overrides_ranges(tmp_path):
    f = tmp_path / "clip.txt"
    f.write_text("# comment\n0 10 Sit\n\n20 30 Lie  # trailing comment\n")
    labels = st.apply_label_file(np.full(40, st.MOVE), f)
    assert (labels[:10] == st.SIT).all() and (labels[10:20] == st.MOVE).all() and (labels[20:30] == st.LIE).all()


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 10\n", "expected 'START END STYLE'"),
        ("a 10 Sit\n", "must be integers"),
        ("0 10 Run\n", "unknown style 'Run'"),
        ("0 10 Sit\n30 60 Idle\n", "outside the clip's 40 frames"),
        ("10 10 Sit\n", "empty or outside"),
    ],
)
def test_bad_label_file_names_file_and_line(tmp_path, text, message):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(MotionDataError, match=message) as e:
        st.read_label_file(f, 40)
    assert "bad.txt:" in str(e.value)
    assert e.value.line == len(text.strip().splitlines())
