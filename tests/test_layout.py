"""The MANN column map: dimensions, named slices and the original gating indices."""

import numpy as np
import pytest

from mann_jax.data import layout


def test_dimensions_and_names():
    assert layout.INPUT_DIM == 480 and layout.OUTPUT_DIM == 363
    assert len(layout.input_column_names()) == 480
    assert len(set(layout.input_column_names())) == 480
    assert len(layout.output_column_names()) == 363
    assert len(set(layout.output_column_names())) == 363
    assert layout.NUM_BONES == 27


def test_gating_indices_are_paw_velocities_speed_and_styles():
    names = layout.input_column_names()
    gating = [names[i] for i in layout.GATING_INDICES]
    expected = [f"bone[{p}].vel.{a}" for p in layout.PAWS for a in "xyz"]
    expected += ["traj[6].speed"] + [f"traj[6].style.{s}" for s in layout.STYLES]
    assert gating == expected
    # The original MANN indices, written out in the data README.
    assert list(layout.GATING_INDICES) == [285, 286, 287, 345, 346, 347, 393, 394, 395, 441, 442, 443,
                                           84, 85, 86, 87, 88, 89, 90]


def test_named_slices_agree_with_names():
    names = layout.input_column_names()
    s = layout.input_bone("LeftFootSite", "up")
    assert names[s] == ["bone[LeftFootSite].up.x", "bone[LeftFootSite].up.y", "bone[LeftFootSite].up.z"]
    assert names[layout.input_sample(3, "dir")] == ["traj[3].dir.x", "traj[3].dir.z"]
    out = layout.output_column_names()
    assert out[layout.OUTPUT_ROOT] == ["root.dx", "root.dtheta", "root.dz"]
    assert out[layout.output_sample(11, "vel")] == ["next_traj[11].vel.x", "next_traj[11].vel.z"]
    assert out[layout.output_bone(0, "pos")][0] == "bone[Hips].pos.x"
    with pytest.raises(ValueError, match="samples are 6..11"):
        layout.output_sample(2, "pos")


@pytest.mark.parametrize("kind", ["input", "output"])
def test_mirror_map_is_an_involution(kind):
    signs, perm = layout.mirror_signs_and_permutation(kind)
    v = np.random.default_rng(0).normal(size=(5, len(perm)))
    once = (v * signs)[:, perm]
    twice = (once * signs)[:, perm]
    np.testing.assert_array_equal(twice, v)
    names = {"input": layout.input_column_names, "output": layout.output_column_names}[kind]()
    i = names.index("bone[LeftHand].pos.x")
    j = names.index("bone[RightHand].pos.x")
    assert perm[i] == j and signs[i] == -1


def test_mirror_negates_lateral_root_update():
    signs, perm = layout.mirror_signs_and_permutation("output")
    names = layout.output_column_names()
    for field, sign in (("root.dx", -1), ("root.dtheta", -1), ("root.dz", 1)):
        i = names.index(field)
        assert signs[i] == sign and perm[i] == i
