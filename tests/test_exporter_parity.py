"""The project's feature rows are the original exporter's: pinned on the exporter's own 200 rows.

``mocap-sample.txt`` (in the shared AI4Animation weights folder, never copied into the repository)
holds 200 input rows that AI4Animation's ``MotionExporter.cs`` wrote for ``D1_001_KAN01_001``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from configs import dog
from mann_jax.data.bvh import load_bvh
from mann_jax.data.dataset import clip_rows
from mann_jax.evaluate import exporter_parity as parity

PRETRAINED = Path(__file__).resolve().parents[1].parent / "shared/data/mann_pretrained"
SAMPLE_CLIP = "D1_001_KAN01_001"


@pytest.fixture(scope="module")
def sample_clip_rows(dog_bvh_dir):
    if not (PRETRAINED / "mocap-sample.txt").is_file():
        pytest.skip(f"mocap-sample.txt not found in {PRETRAINED}")
    rows = clip_rows(load_bvh(dog_bvh_dir / f"{SAMPLE_CLIP}.bvh"), dog.get_config().data)
    return rows, np.loadtxt(PRETRAINED / "mocap-sample.txt", dtype=np.float64)


def test_rows_match_the_exporters_sample(sample_clip_rows):
    rows, sample = sample_clip_rows
    keep = ~rows.mirrored
    offset, groups = parity.sample_parity(sample, rows.inputs[keep])
    assert rows.frames[keep][offset] == 120  # the stretch the sample was exported from
    # The sample is printed with 5 decimals, so exact agreement is a difference of a few 1e-6.
    for name, g in groups.items():
        assert g.mean_abs_diff < 2e-5, (name, g)
        if name != "styles":  # constant (Idle) over the sample
            assert g.correlation > 0.9999, (name, g)


def test_a_changed_definition_is_caught(sample_clip_rows):
    """The comparison can fail: forward instead of backward differences for the bone velocities."""
    rows, sample = sample_clip_rows
    x = rows.inputs[~rows.mirrored]
    vel = parity.INPUT_GROUPS["bone velocities"]
    shifted = x.copy()
    shifted[:-1, vel] = x[1:, vel]
    _, groups = parity.sample_parity(sample, shifted)
    assert groups["bone velocities"].mean_abs_diff > 1e-3
    assert groups["bone positions"].mean_abs_diff < 2e-5


@pytest.mark.slow
def test_authors_network_reads_both_halves_alike(sample_clip_rows):
    from mann_jax.export.ai4animation import model_from_ai4animation

    rows, _ = sample_clip_rows
    model, norm = model_from_ai4animation(PRETRAINED)
    errors = {}
    for mirrored in (False, True):
        keep = np.flatnonzero(rows.mirrored == mirrored)[100:400]
        errors[mirrored] = parity.network_errors(parity.predict(model, norm, rows.inputs[keep]), rows.outputs[keep],
                                                 norm.y_std)
    for e in errors.values():  # the weights README's check: about 2 mm on the exporter's rows
        assert e.bone_position_m < 0.004 and e.mean_std_units < 0.05
    assert errors[True].bone_position_m < 1.5 * errors[False].bone_position_m


@pytest.mark.slow
def test_parity_command_without_the_sample_is_one_error_line(tmp_path, dog_bvh_dir):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "experiments.parity", f"--config.data.path={dog_bvh_dir}",
                           f"--pretrained={tmp_path}"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    want = f"error: {tmp_path / 'mocap-sample.txt'}: missing (the exporter's sample rows)"
    assert proc.stderr.strip().splitlines()[-1] == want


def test_rows_inside_the_export_distribution_and_style_mix():
    """A row is 'inside' when no bone column is more than max_z of Xstd from Xmean; styles average per column."""
    from mann_jax.data import layout
    from mann_jax.data.normalisation import Normalisation

    rng = np.random.default_rng(0)
    norm = Normalisation(x_mean=rng.normal(size=layout.INPUT_DIM), x_std=np.full(layout.INPUT_DIM, 0.5),
                         y_mean=np.zeros(layout.OUTPUT_DIM), y_std=np.ones(layout.OUTPUT_DIM))
    x = np.tile(norm.x_mean, (3, 1))
    x[1, layout.input_bone("Hips", "fwd")] += 0.5 * 9.9  # 9.9 std: inside at max_z 10
    x[2, layout.input_bone("Tail", "pos")] -= 0.5 * 10.1
    x[2, layout.INPUT_TRAJECTORY] += 100.0  # trajectory columns do not count
    assert parity.within_export_distribution(x, norm, max_z=10).tolist() == [True, True, False]
    from mann_jax.config_errors import ConfigError

    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(ConfigError, match="--max_z must be a positive number"):
            parity.within_export_distribution(x, norm, max_z=bad)
    styles = layout.input_sample(layout.CURRENT_SAMPLE, "style")
    x[:, styles] = np.eye(layout.NUM_STYLES)[[0, 1, 1]]
    np.testing.assert_allclose(parity.style_mix(x), [1 / 3, 2 / 3, 0, 0, 0, 0])
