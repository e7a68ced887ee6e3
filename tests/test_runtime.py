"""The per-frame runtime (numpy and JAX): equal to the masked dense model, batch 1 equal to batch N.

Tolerance: 1e-5 relative (max-norm over the outputs) against the JAX ``MANN`` in evaluation mode on
the masked (pruned) full-size weights, normalisation and denormalisation included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mann_jax.data.normalisation import Normalisation
from mann_jax.export.compact import CompactModel, compact_from_params
from mann_jax.export.runtime import (
    JaxRuntime,
    NumpyRuntime,
    _NumpyCSR,
    fold,
    make_runtime,
)
from mann_jax.model import MANN, expert_weight_bound
from mann_jax.pruning.accounting import global_magnitude_masks
from mann_jax.pruning.structured import leaf_masks_from_units
from mann_jax.train import ModelFunctions

HIDDEN, EXPERTS = (96, 80), 4
PRETRAINED = Path(__file__).resolve().parents[1].parent / "shared/data/mann_pretrained"


def rel_err(got: Any, want: Any) -> float:
    """max |got - want| / max |want|."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _masked(params: Any, masks: Any) -> Any:
    return jax.tree.map(lambda p, m: np.where(np.asarray(m, bool), p, np.float32(0)), params, masks)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    """A small MANN (non-trivial weights, biases, normalisation) with unstructured and structured variants."""
    rng = np.random.default_rng(1)
    model = MANN(hidden_sizes=HIDDEN, n_experts=EXPERTS, rngs=nnx.Rngs(3))
    fns = ModelFunctions.of(model)
    params = jax.tree.map(lambda a: np.array(a, np.float32), fns.params)
    for l in range(3):
        a = params[f"layer{l}"]["alpha"]
        a *= np.float32(0.05 / expert_weight_bound(a.shape[1], a.shape[2]))
        params[f"layer{l}"]["beta"] = rng.normal(0, 0.2, params[f"layer{l}"]["beta"].shape).astype(np.float32)
    norm = Normalisation(rng.normal(0, 1, 480).astype(np.float32), rng.uniform(0.5, 2, 480).astype(np.float32),
                         rng.normal(0, 1, 363).astype(np.float32), rng.uniform(0.5, 2, 363).astype(np.float32))
    u0, u1 = rng.random(HIDDEN[0]) < 0.1, rng.random(HIDDEN[1]) < 0.1
    unit_masks = jax.tree.map(lambda a: np.ones(a.shape, bool), params)
    for (layer, name), m in leaf_masks_from_units(params, jnp.asarray(u0), jnp.asarray(u1)).items():
        unit_masks[layer][name] = np.asarray(m)
    variants = {
        "unstructured": _masked(params, global_magnitude_masks(params, [0.9])[0]),
        "structured": _masked(params, unit_masks),
        "dense": params,
    }
    x = (rng.normal(0, 1, (32, 480)) * norm.x_std + norm.x_mean).astype(np.float32)
    gi = model.gating_indices
    compact = {k: compact_from_params(p, norm, gating_indices=gi) for k, p in variants.items()}
    ref = {}
    for k, p in variants.items():
        y, omega = fns.predict(jax.tree.map(jnp.asarray, p), jnp.asarray(norm.normalise_inputs(x)), return_gating=True)
        ref[k] = (np.asarray(norm.denormalise_outputs(y)), np.asarray(omega))
    return {"x": x, "compact": compact, "ref": ref, "units": (int(u0.sum()), int(u1.sum()))}


RUNTIMES = [("numpy", "dense"), ("numpy", "sparse"), ("numpy", "auto"), ("jax", "dense"), ("jax", "sparse"),
            ("jax", "auto")]


@pytest.mark.parametrize("backend,kernel", RUNTIMES)
@pytest.mark.parametrize("variant", ["unstructured", "structured"])
def test_runtime_equals_the_masked_dense_model(setup, backend, kernel, variant):
    rt = make_runtime(setup["compact"][variant], backend=backend, kernel=kernel, batch_kernel=kernel)
    want, omega = setup["ref"][variant]
    x = setup["x"]
    y_batch, om_batch = rt.batch(x, return_gating=True)
    y_one = np.stack([np.asarray(rt.step(r)) for r in x])
    assert rel_err(y_batch, want) <= 1e-5
    assert rel_err(y_one, want) <= 1e-5
    assert rel_err(y_one, y_batch) <= 1e-5  # batch-1 and batch-N paths agree
    np.testing.assert_allclose(np.asarray(om_batch), omega, atol=1e-6)
    y0, om0 = rt.step(x[0], return_gating=True)
    np.testing.assert_allclose(np.asarray(om0), omega[0], atol=1e-6)
    assert np.asarray(y0).shape == (363,) and np.asarray(rt(x[:3])).shape == (3, 363)


def test_structured_model_is_physically_smaller(setup):
    compact = setup["compact"]["structured"]
    assert compact.hidden_sizes == setup["units"]
    rt = NumpyRuntime(compact)
    assert rt.kernels == ("dense", "dense", "dense")
    dense_rt = NumpyRuntime(setup["compact"]["dense"])
    assert sum(l.matrix.size for l in rt.layers) < 0.2 * sum(l.matrix.size for l in dense_rt.layers)


def test_jax_runtime_products_are_float32_on_every_backend(setup):
    # GPUs would otherwise use TF32 and miss the 1e-5 agreement with the model.
    compact = setup["compact"]["dense"]
    rt = JaxRuntime(compact)
    for fn, x in ((rt._step, np.zeros(compact.input_size, np.float32)),
                  (rt._batch, np.zeros((4, compact.input_size), np.float32))):
        dots = [line for line in fn.lower(rt.arrays, x).as_text().splitlines() if "dot_general" in line]
        assert dots and all("precision = [HIGHEST, HIGHEST]" in line for line in dots)


def test_auto_kernel_follows_density(setup):
    rt = NumpyRuntime(setup["compact"]["unstructured"])
    assert rt.kernels == ("sparse", "sparse", "sparse")
    assert all(l.density < 0.15 for l in rt.layers)
    assert NumpyRuntime(setup["compact"]["dense"]).kernels == ("dense", "dense", "dense")
    assert JaxRuntime(setup["compact"]["unstructured"]).batch_kernels == ("dense", "dense", "dense")
    with pytest.raises(ValueError, match="kernel must be"):
        NumpyRuntime(setup["compact"]["dense"], kernel="fast")


def test_folded_layers_and_sparse_layouts_agree(setup):
    _, layers = fold(setup["compact"]["unstructured"])
    rng = np.random.default_rng(0)
    for layer in layers:
        v = rng.normal(size=layer.matrix.shape[0]).astype(np.float32)
        want = v @ layer.matrix
        indptr, indices, data = layer.csr()
        cols, vals = layer.ell()
        np.testing.assert_allclose(np.sum(vals * v[cols], axis=0), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_NumpyCSR(indptr, indices, data) @ v, want, rtol=1e-5, atol=1e-5)


def test_numpy_fallback_csr_handles_empty_rows():
    m = np.zeros((5, 7), np.float32)
    m[1, [0, 3]] = [1.0, 2.0]
    m[3, 6] = 4.0  # rows 0, 2 and 4 (the last) are empty
    rows, cols = np.nonzero(m)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=5))]).astype(np.int32)
    v = np.arange(1, 8, dtype=np.float32)
    np.testing.assert_array_equal(_NumpyCSR(indptr, cols.astype(np.int32), m[rows, cols]) @ v, m @ v)


def test_bad_input_shapes_are_clear_errors(setup):
    for rt in (NumpyRuntime(setup["compact"]["structured"]), JaxRuntime(setup["compact"]["structured"])):
        with pytest.raises(ValueError, match="step expects one input of shape \\(480,\\)"):
            rt.step(np.zeros(479, np.float32))
        with pytest.raises(ValueError, match="batch expects inputs of shape \\(N, 480\\)"):
            rt.batch(np.zeros((2, 481), np.float32))
    with pytest.raises(ValueError, match="backend must be"):
        make_runtime(setup["compact"]["dense"], backend="torch")


@pytest.mark.skipif(not (PRETRAINED / "wc0_w.bin").is_file(), reason=f"original MANN weights not at {PRETRAINED}")
def test_runtime_on_the_original_trained_weights_pruned(tmp_path):
    """The real trained dog model, 90 % global magnitude pruned: numpy, JAX and ONNX equal the JAX model."""
    from mann_jax.export.ai4animation import model_from_ai4animation
    from mann_jax.export.onnx import export_onnx, load_onnx

    model, norm = model_from_ai4animation(PRETRAINED)
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    pruned = _masked(params, global_magnitude_masks(params, [0.9])[0])
    fns = ModelFunctions.of(model)
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 1, (8, 480)) * norm.x_std + norm.x_mean).astype(np.float32)
    y = fns.predict(jax.tree.map(jnp.asarray, pruned), jnp.asarray(norm.normalise_inputs(x)))
    want = np.asarray(norm.denormalise_outputs(y))
    compact: CompactModel = compact_from_params(pruned, norm, gating_indices=model.gating_indices)
    for rt in (NumpyRuntime(compact), JaxRuntime(compact), load_onnx(export_onnx(compact, tmp_path / "m.onnx"))):
        assert rel_err(rt.batch(x), want) <= 1e-5
        assert rel_err(np.stack([np.asarray(rt.step(r)) for r in x]), want) <= 1e-5
