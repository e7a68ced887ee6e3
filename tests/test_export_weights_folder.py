"""``experiments.export`` of an AI4Animation weights folder (the authors' trained dog, or one the project wrote).

The folder gives the network and its own normalisation. The authors' folder is read from
``../shared/data/mann_pretrained`` (never copied into the repository); its tests skip when it is
absent. The error tests use a small folder written by the project's own exporter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.export import export
from mann_jax.checkpoint import CheckpointError
from mann_jax.data.normalisation import Normalisation
from mann_jax.export.ai4animation import (
    WeightsFormatError,
    is_weights_folder,
    model_from_ai4animation,
    save_ai4animation,
)
from mann_jax.export.compact import load_compact
from mann_jax.export.onnx import load_onnx
from mann_jax.export.runtime import NumpyRuntime
from mann_jax.model import MANN
from mann_jax.train import ModelFunctions

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO.parent / "shared/data/mann_pretrained"

needs_weights = pytest.mark.skipif(
    not (PRETRAINED / "wc0_w.bin").is_file() or not (PRETRAINED / "mocap-sample.txt").is_file(),
    reason=f"original MANN weights not found at {PRETRAINED} (see shared/data/mann_pretrained)",
)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def jax_outputs(folder: Path, x: np.ndarray) -> np.ndarray:
    """The folder's network as the JAX model, on raw inputs (normalise -> MANN -> denormalise)."""
    model, norm = model_from_ai4animation(folder)
    y = ModelFunctions.of(model).predict(ModelFunctions.of(model).params, jnp.asarray(norm.normalise_inputs(x)))
    return np.asarray(norm.denormalise_outputs(y))


@pytest.fixture(scope="module")
def authors_rows() -> np.ndarray:
    if not (PRETRAINED / "mocap-sample.txt").is_file():
        pytest.skip(f"original MANN weights not found at {PRETRAINED}")
    return np.loadtxt(PRETRAINED / "mocap-sample.txt", dtype=np.float32)[::40]  # 5 rows


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small network with the dog's input/output widths and gating indices, written as AI4Animation files."""
    folder = tmp_path_factory.mktemp("weights") / "small"
    rng = np.random.default_rng(0)
    norm = Normalisation(rng.normal(0, 1, 480).astype(np.float32), rng.uniform(0.5, 2, 480).astype(np.float32),
                         rng.normal(0, 1, 363).astype(np.float32), rng.uniform(0.5, 2, 363).astype(np.float32))
    save_ai4animation(MANN(hidden_sizes=(16, 12), n_experts=3, rngs=nnx.Rngs(3)), norm, folder)
    return folder


@needs_weights
@pytest.mark.parametrize("fmt", ["compact", "onnx"])
def test_authors_folder_exports_and_runs_like_the_jax_model(fmt, authors_rows, tmp_path):
    out = tmp_path / f"authors.{'npz' if fmt == 'compact' else 'onnx'}"
    summary = export(PRETRAINED, fmt, out)
    assert summary["step"] is None and summary["hidden_sizes"] == [512, 512]
    runtime = NumpyRuntime(load_compact(out)) if fmt == "compact" else load_onnx(out)
    assert rel_err(runtime.batch(authors_rows), jax_outputs(PRETRAINED, authors_rows)) <= 1e-5
    if fmt == "compact":  # the folder's own normalisation travels with it
        _, norm = model_from_ai4animation(PRETRAINED)
        np.testing.assert_array_equal(load_compact(out).normalisation.x_mean, norm.x_mean)


@needs_weights
def test_authors_folder_round_trips_bit_exactly(tmp_path):
    summary = export(PRETRAINED, "ai4animation", tmp_path / "bin")
    originals = sorted(p.name for p in PRETRAINED.glob("*.bin"))
    assert sorted(p.name for p in (tmp_path / "bin").glob("*.bin")) == originals
    assert summary["files"] == len(originals)
    for name in originals:
        assert (tmp_path / "bin" / name).read_bytes() == (PRETRAINED / name).read_bytes(), name


def test_small_folder_exports_in_every_format(small_folder, tmp_path):
    x = np.random.default_rng(1).normal(0, 1, (6, 480)).astype(np.float32)
    want = jax_outputs(small_folder, x)
    export(small_folder, "compact", tmp_path / "m.npz")
    assert rel_err(NumpyRuntime(load_compact(tmp_path / "m.npz")).batch(x), want) <= 1e-5
    export(small_folder, "onnx", tmp_path / "m.onnx")
    assert rel_err(load_onnx(tmp_path / "m.onnx").batch(x), want) <= 1e-5
    export(small_folder, "ai4animation", tmp_path / "bin")
    for p in small_folder.glob("*.bin"):
        assert (tmp_path / "bin" / p.name).read_bytes() == p.read_bytes(), p.name


def test_step_or_normalisation_with_a_weights_folder_is_refused(small_folder, tmp_path):
    with pytest.raises(CheckpointError, match="weights folder .*--step does not apply"):
        export(small_folder, "compact", tmp_path / "m.npz", step=3)
    with pytest.raises(CheckpointError, match="--step and --normalisation do not apply"):
        export(small_folder, "compact", tmp_path / "m.npz", step=3, normalisation=tmp_path / "n.npz")
    assert not (tmp_path / "m.npz").exists()


def test_a_folder_missing_a_file_is_still_a_weights_folder(small_folder, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "Xmean.bin").write_bytes((small_folder / "Xmean.bin").read_bytes())
    assert is_weights_folder(partial) and is_weights_folder(small_folder)
    assert not is_weights_folder(tmp_path / "nowhere") and not is_weights_folder(tmp_path)
    with pytest.raises(WeightsFormatError, match=r"partial/Xstd\.bin: file not found"):
        export(partial, "compact", tmp_path / "m.npz")


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for p in folder.glob("*.bin"):
        (to / p.name).write_bytes(p.read_bytes())
    return to


def _export_command(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "experiments.export", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_export_command_errors_for_a_weights_folder(small_folder, tmp_path):
    """Each is one ``error:`` line naming the file (or the flag) and exit status 2; nothing is written."""
    missing = _copy(small_folder, tmp_path / "missing")
    (missing / "cp1_a2.bin").unlink()
    wrong = _copy(small_folder, tmp_path / "wrong")
    data = (wrong / "wc1_w.bin").read_bytes()
    (wrong / "wc1_w.bin").write_bytes(data[:-8])
    cases = [
        ([f"--checkpoint={missing}"], rf"error: {missing}/cp1_a2\.bin: file not found"),
        ([f"--checkpoint={wrong}"], rf"error: {wrong}/wc1_w\.bin: wrong size .* \(expected {len(data)} bytes, "
                                    rf"found {len(data) - 8}\)"),
        ([f"--checkpoint={small_folder}", "--step=2"], rf"error: {small_folder}: .*--step does not apply"),
        ([f"--checkpoint={small_folder}", f"--normalisation={tmp_path / 'n.npz'}"],
         "error: .*--normalisation does not apply"),
    ]
    for args, says in cases:
        proc = _export_command(*args, "--format=compact", f"--out={tmp_path / 'm.npz'}")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert len([l for l in lines if l.startswith("error:")]) == 1, proc.stderr
        assert re.fullmatch(says, lines[-1]), lines[-1]
        assert not (tmp_path / "m.npz").exists()


@pytest.mark.slow
def test_export_command_on_a_weights_folder(small_folder, tmp_path):
    proc = _export_command(f"--checkpoint={small_folder}", "--format=onnx", f"--out={tmp_path / 'm.onnx'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["step"] is None and summary["format"] == "onnx" and summary["hidden_sizes"] == [16, 12]
    assert "step" not in proc.stdout.splitlines()[0]
