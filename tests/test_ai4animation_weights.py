"""The original trained MANN weights load into the Flax model and reproduce the original forward.

Reads the shared copy of the AI4Animation weights (never copied into the repository) from
``../shared/data/mann_pretrained`` relative to the repository root; skipped when absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mann_jax.data.normalisation import Normalisation
from mann_jax.export.ai4animation import (
    WeightsFormatError,
    load_ai4animation_weights,
    model_from_ai4animation,
    save_ai4animation,
)
from mann_jax.model import DEFAULT_GATING_INDICES, MANN, apply

PRETRAINED = Path(__file__).resolve().parents[1].parent / "shared/data/mann_pretrained"

needs_weights = pytest.mark.skipif(
    not (PRETRAINED / "wc0_w.bin").is_file() or not (PRETRAINED / "mocap-sample.txt").is_file(),
    reason=f"original MANN weights not found at {PRETRAINED} (see shared/data/mann_pretrained)",
)

Pretrained = tuple[MANN, Normalisation, np.ndarray]

_japply = jax.jit(apply, static_argnums=0, static_argnames=("formulation",))


def _numpy_forward(folder: Path, inputs: np.ndarray) -> np.ndarray:
    """The original MANN forward pass, straight from the weights' README (float64 numpy)."""

    def f(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.fromfile(folder / f"{name}.bin", dtype="<f4").astype(np.float64).reshape(shape)

    def elu(v: np.ndarray) -> np.ndarray:
        return np.where(v > 0, v, np.expm1(np.minimum(v, 0.0)))

    x_mean, x_std = f("Xmean", (480,)), f("Xstd", (480,))
    y_mean, y_std = f("Ymean", (363,)), f("Ystd", (363,))
    w0, b0 = f("wc0_w", (32, 19)), f("wc0_b", (32,))
    w1, b1 = f("wc1_w", (32, 32)), f("wc1_b", (32,))
    w2, b2 = f("wc2_w", (8, 32)), f("wc2_b", (8,))
    shapes = ((512, 480), (512, 512), (363, 512))
    a = [[f(f"cp{l}_a{k}", shapes[l]) for k in range(8)] for l in range(3)]
    b = [[f(f"cp{l}_b{k}", shapes[l][:1]) for k in range(8)] for l in range(3)]
    outputs = []
    for row in inputs.astype(np.float64):
        x = (row - x_mean) / x_std
        g = x[list(DEFAULT_GATING_INDICES)]
        logits = w2 @ elu(w1 @ elu(w0 @ g + b0) + b1) + b2
        w = np.exp(logits - logits.max())
        w /= w.sum()
        A = [sum(w[k] * a[l][k] for k in range(8)) for l in range(3)]
        B = [sum(w[k] * b[l][k] for k in range(8)) for l in range(3)]
        h1 = elu(A[0] @ x + B[0])
        h2 = elu(A[1] @ h1 + B[1])
        y = A[2] @ h2 + B[2]
        outputs.append(y * y_std + y_mean)
    return np.stack(outputs)


@pytest.fixture(scope="module")
def pretrained() -> Pretrained:
    if not (PRETRAINED / "wc0_w.bin").is_file():
        pytest.skip(f"original MANN weights not found at {PRETRAINED}")
    model, norm = model_from_ai4animation(PRETRAINED)
    inputs = np.loadtxt(PRETRAINED / "mocap-sample.txt", dtype=np.float32)
    return model, norm, inputs


@needs_weights
def test_loaded_model_matches_numpy_reference(pretrained: Pretrained) -> None:
    model, norm, inputs = pretrained
    assert inputs.shape == (200, 480)
    assert model.n_experts == 8 and model.hidden_sizes == (512, 512)
    ref = _numpy_forward(PRETRAINED, inputs[:24])
    graphdef, state = nnx.split(model)
    x = norm.normalise_inputs(jnp.asarray(inputs[:24]))
    for form in ("blend", "mix"):
        y = np.asarray(norm.denormalise_outputs(_japply(graphdef, state, x, formulation=form)))
        rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
        assert rel < 1e-5, (form, rel)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@needs_weights
def test_predicted_bones_match_next_input_frame(pretrained: Pretrained) -> None:
    model, norm, inputs = pretrained
    graphdef, state = nnx.split(model)
    y = norm.denormalise_outputs(_japply(graphdef, state, norm.normalise_inputs(jnp.asarray(inputs))))
    y = np.asarray(y)
    predicted = y[:-1, 36:360].reshape(-1, 27, 12)[..., :3]
    actual = inputs[1:, 156:480].reshape(-1, 27, 12)[..., :3]
    mad = float(np.abs(predicted - actual).mean())
    print(f"pretrained MANN: mean |bone position(t) predicted - input(t+1)| = {mad:.5f}")
    assert mad < 0.005


@needs_weights
def test_round_trip_is_bitwise_exact(pretrained: Pretrained, tmp_path: Path) -> None:
    model, norm, _ = pretrained
    written = save_ai4animation(model, norm, tmp_path / "out")
    originals = sorted(p.name for p in PRETRAINED.glob("*.bin"))
    assert sorted(p.name for p in written) == originals
    for name in originals:
        assert (tmp_path / "out" / name).read_bytes() == (PRETRAINED / name).read_bytes(), name
    again = load_ai4animation_weights(tmp_path / "out")
    first = load_ai4animation_weights(PRETRAINED)
    assert again.keys() == first.keys()
    for key in first:
        np.testing.assert_array_equal(again[key], first[key])


def _tiny_export(folder: Path) -> tuple[MANN, Normalisation]:
    """Writes a small random model (works without the shared data)."""
    model = MANN(input_size=12, output_size=5, hidden_sizes=(6, 4), n_experts=3,
                 gating_indices=(0, 2, 4), gating_hidden=4, rngs=nnx.Rngs(1))
    rng = np.random.default_rng(0)
    norm = Normalisation(*(rng.standard_normal(n).astype(np.float32) for n in (12, 12, 5, 5)))
    save_ai4animation(model, norm, folder)
    return model, norm


def test_tiny_round_trip_without_shared_data(tmp_path: Path) -> None:
    model, norm = _tiny_export(tmp_path / "a")
    loaded, norm2 = model_from_ai4animation(tmp_path / "a", gating_indices=(0, 2, 4))
    assert loaded.hidden_sizes == (6, 4) and loaded.n_experts == 3
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param)),
                    jax.tree.leaves(nnx.state(loaded, nnx.Param))):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(norm, norm2):
        np.testing.assert_array_equal(a, b)
    save_ai4animation(loaded, norm2, tmp_path / "b")
    for p in sorted((tmp_path / "a").glob("*.bin")):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes(), p.name


def test_truncated_or_missing_file_is_named(tmp_path: Path) -> None:
    _tiny_export(tmp_path / "w")
    target = tmp_path / "w" / "cp1_a2.bin"
    data = target.read_bytes()
    target.write_bytes(data[:-4])
    with pytest.raises(WeightsFormatError, match="cp1_a2.bin") as info:
        load_ai4animation_weights(tmp_path / "w")
    assert info.value.expected_bytes == len(data)
    assert info.value.found_bytes == len(data) - 4
    assert f"expected {len(data)} bytes, found {len(data) - 4}" in str(info.value)
    target.unlink()
    with pytest.raises(WeightsFormatError, match="cp1_a2.bin.*not found"):
        load_ai4animation_weights(tmp_path / "w")
    with pytest.raises(WeightsFormatError, match="folder not found"):
        load_ai4animation_weights(tmp_path / "nowhere")
    assert issubclass(WeightsFormatError, ValueError)


@needs_weights
def test_truncated_copy_of_pretrained_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(PRETRAINED, folder, ignore=shutil.ignore_patterns("*.txt", "*.md"))
    path = folder / "cp2_a5.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsFormatError, match=r"cp2_a5\.bin.*363x512.*expected 743424 bytes"):
        load_ai4animation_weights(folder)


def test_gating_width_mismatch(tmp_path: Path) -> None:
    _tiny_export(tmp_path / "w")
    with pytest.raises(WeightsFormatError, match="wc0_w.bin.*3 inputs"):
        model_from_ai4animation(tmp_path / "w", gating_indices=(0, 1))


@needs_weights
def test_authors_network_drives_the_controller(pretrained):
    """The authors' folder in the project's controller: from the exporter's first sample row (standing),
    a 2 s walk command moves the dog forward on the floor with a standing posture."""
    from mann_jax.control import initial_state_from_input, make_scenario, rollout
    from mann_jax.data import layout
    from mann_jax.evaluate import paw_positions
    from mann_jax.train import ModelFunctions

    model, norm, inputs = pretrained
    fns = ModelFunctions.of(model)
    scenario = make_scenario("walk", speed=1.0, seconds=2.0)
    r = rollout(fns, fns.params, norm, initial_state_from_input(inputs[0]), scenario.control)
    bones = np.asarray(r.bones)
    assert np.isfinite(bones).all()
    hips = bones[:, layout.BONES.index("Hips"), 1]
    assert 0.35 < np.median(hips) < 0.6
    lowest = paw_positions(bones)[..., 1].min(axis=-1)
    assert np.mean((lowest > -0.03) & (lowest < 0.05)) > 0.9
    final = np.asarray(r.root_positions[-1])
    assert final[2] > 0.5 and abs(final[0]) < 0.3 * final[2]  # forward along the commanded heading
