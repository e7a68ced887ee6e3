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
from mann_jax.export import compiled_kernels
from mann_jax.export.compact import CompactModel, compact_from_params
from mann_jax.export.runtime import (
    NUMPY_SPARSE_BELOW,
    SCIPY_SPARSE_BELOW,
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
needs_numba = pytest.mark.skipif(not compiled_kernels.AVAILABLE, reason="numba is not installed")


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


# "numpy-scipy": NumpyRuntime(compiled=False), scipy's CSR and numpy's gating (the path without numba).
RUNTIMES = [("numpy", "dense"), ("numpy", "sparse"), ("numpy", "auto"), ("numpy-scipy", "sparse"),
            ("numpy-scipy", "auto"), ("jax", "dense"), ("jax", "sparse"), ("jax", "auto")]


@pytest.mark.parametrize("backend,kernel", RUNTIMES)
@pytest.mark.parametrize("variant", ["unstructured", "structured"])
def test_runtime_equals_the_masked_dense_model(setup, backend, kernel, variant):
    if backend == "numpy-scipy":
        rt = NumpyRuntime(setup["compact"][variant], kernel=kernel, batch_kernel=kernel, compiled=False)
        assert rt.sparse_impl == "scipy"
    else:
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
    # Each sparse kernel has its own crossover with the dense gemv.
    layers = rt.layers
    for compiled, below in ((False, SCIPY_SPARSE_BELOW), (None, NUMPY_SPARSE_BELOW)):
        if compiled is None and not compiled_kernels.AVAILABLE:
            continue
        r = NumpyRuntime(setup["compact"]["unstructured"], compiled=compiled)
        assert r.kernels == tuple("sparse" if l.density < below else "dense" for l in layers)
        assert r.sparse_impl == ("scipy" if compiled is False else "numba")
        if compiled is None:
            assert [isinstance(m, compiled_kernels.CSRMatrix) for m in r.compiled_frame.layers] == [
                k == "sparse" for k in r.kernels]
        else:
            assert r.compiled_frame is None
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


# ----------------------------------------------------------------------------- compiled kernels


def _random_sparse(rng: np.random.Generator, rows: int, out: int, density: float) -> np.ndarray:
    m = rng.normal(size=(rows, out)).astype(np.float32)
    return np.where(rng.random((rows, out)) < density, m, np.float32(0))


def _mixed_reference(matrix: np.ndarray, h1: np.ndarray, omega: np.ndarray, elu: bool) -> np.ndarray:
    v = (omega.astype(np.float64)[:, None] * h1.astype(np.float64)[None, :]).reshape(-1)
    y = v @ matrix.astype(np.float64)
    return np.where(y > 0, y, np.expm1(np.minimum(y, 0))) if elu else y


@needs_numba
@pytest.mark.parametrize("k,width,out,density", [(8, 33, 40, 0.1), (4, 97, 17, 0.02), (3, 5, 64, 0.5),
                                                 (2, 64, 9, 1.0)])
@pytest.mark.parametrize("elu", [False, True])
@pytest.mark.parametrize("kind", ["csr", "dense"])
def test_compiled_layer_equals_the_dense_product(k, width, out, density, elu, kind):
    rng = np.random.default_rng(k * 1000 + out)
    m = _random_sparse(rng, k * (width + 1), out, density)
    m[:, ::5] = 0  # every fifth output row of A^T is empty
    if kind == "csr":
        matrix = compiled_kernels.CSRMatrix(m)
        assert matrix.indices.dtype == np.uint16 and matrix.data.size == np.count_nonzero(m)
        assert matrix.nbytes == matrix.data.size * 6 + (out + 1) * 4
    else:
        matrix = m
    for _ in range(3):
        h1 = np.append(rng.normal(size=width), 1).astype(np.float32)
        omega = rng.dirichlet(np.ones(k)).astype(np.float32)
        buf = np.full(out + 1, 7.0, np.float32)
        got = compiled_kernels.mixed_layer(h1, omega, matrix, buf[:-1], elu=elu)  # into a view
        want = _mixed_reference(m, h1, omega, elu)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        assert buf[-1] == 7.0 and np.all(got[::5] == 0)


@needs_numba
def test_compiled_csr_layer_of_an_empty_matrix_is_zero():
    matrix = compiled_kernels.CSRMatrix(np.zeros((2 * 11, 6), np.float32))
    assert matrix.data.size == 0
    out = np.full(6, np.nan, np.float32)
    got = compiled_kernels.mixed_layer(np.ones(11, np.float32), np.ones(2, np.float32), matrix, out, elu=True)
    np.testing.assert_array_equal(got, 0)


@needs_numba
@pytest.mark.parametrize("rows,dtype", [(compiled_kernels.UINT16_ROWS, np.uint16),
                                        (compiled_kernels.UINT16_ROWS + 2, np.int32)])
def test_compiled_csr_layer_index_width_bound(rows, dtype):
    """Column indices are uint16 up to 65536 rows (the last row, 65535, included), int32 beyond."""
    m = np.zeros((rows, 3), np.float32)
    hot = [0, 1, 40000, 65534, 65535, rows - 1]
    m[hot, 0] = np.arange(1, len(hot) + 1)
    m[rows - 1, 2] = 3.0
    matrix = compiled_kernels.CSRMatrix(m)
    assert matrix.indices.dtype == dtype and int(matrix.indices.max()) == rows - 1
    h1 = np.random.default_rng(0).normal(size=rows // 2).astype(np.float32)
    omega = np.array([0.25, 0.75], np.float32)
    got = compiled_kernels.mixed_layer(h1, omega, matrix, np.empty(3, np.float32), elu=False)
    np.testing.assert_allclose(got, _mixed_reference(m, h1, omega, False), rtol=1e-6)


@needs_numba
def test_compiled_frame_with_dense_and_sparse_layers_equals_numpy(setup):
    """One frame mixing both kernels (the runtime's "auto" may): equal to the numpy path."""
    rt = NumpyRuntime(setup["compact"]["unstructured"], kernel="dense", compiled=False)
    mats = [l.matrix for l in rt.layers]
    frame = compiled_kernels.Frame(rt._x_mean, rt._x_std, rt._gating, rt._gidx,
                                   [compiled_kernels.CSRMatrix(mats[0]), mats[1], compiled_kernels.CSRMatrix(mats[2])])
    for x in setup["x"][:4]:
        want, want_omega = rt.step(x, return_gating=True)
        y, omega = frame(x)
        assert rel_err(y, want) <= 1e-5
        np.testing.assert_allclose(omega, want_omega, rtol=1e-5, atol=1e-7)


@needs_numba
def test_compiled_csr_kernel_is_vectorised_with_gathers():
    """On AVX2 / AVX-512 CPUs LLVM turns the row sums into vgatherdps (32-bit indices: uint16 columns)."""
    import llvmlite.binding as llvm
    import numba

    if "+avx2" not in llvm.get_host_cpu_features().flatten().split(","):
        pytest.skip("no AVX2 on this CPU")
    # A fresh, uncached compilation (numba does not show the machine code of cached functions).
    kernel = numba.njit(**compiled_kernels._OPTIONS)(compiled_kernels._csr_product.py_func)
    matrix = compiled_kernels.CSRMatrix(np.eye(16, 4, dtype=np.float32))
    assert matrix.indices.dtype == np.uint16
    kernel(matrix.indptr, matrix.indices, matrix.data, np.ones(16, np.float32), np.empty(4, np.float32))
    (asm,) = kernel.inspect_asm().values()
    assert "vgatherdps" in asm or "vpgatherdd" in asm


def _unstructured_file(setup: dict[str, Any], tmp_path: Path) -> Path:
    from mann_jax.export.compact import save_compact

    return save_compact(setup["compact"]["unstructured"], tmp_path / "m.npz")


@pytest.mark.slow
def test_numpy_runtime_without_numba_falls_back_to_scipy(setup, tmp_path, steps_in_a_fresh_interpreter):
    """numba made unimportable in a fresh interpreter: the default runtime runs scipy's CSR and equals the model."""
    y = steps_in_a_fresh_interpreter(
        _unstructured_file(setup, tmp_path), setup["x"],
        preamble="import sys\nsys.modules['numba'] = None\n",
        checks=("assert rt.sparse_impl == 'scipy' and rt.compiled_frame is None, rt.sparse_impl\n"
                "try:\n"
                "    NumpyRuntime(model, compiled=True)\n"
                "    raise SystemExit('compiled=True without numba did not raise')\n"
                "except ImportError:\n"
                "    pass\n"))
    want, _ = setup["ref"]["unstructured"]
    assert rel_err(y, want) <= 1e-5


@pytest.mark.slow
@needs_numba
def test_compiled_kernels_work_without_a_writable_cache(setup, tmp_path, steps_in_a_fresh_interpreter):
    """No cache location numba can write (a read-only install, no writable home): compiled per process."""
    y = steps_in_a_fresh_interpreter(
        _unstructured_file(setup, tmp_path), setup["x"],
        preamble=("import numba.core.caching as caching\n"
                  "caching.CacheImpl._locator_classes = []  # numba finds no cache location it can write\n"
                  "from mann_jax.export import compiled_kernels\n"
                  "assert type(compiled_kernels._frame._cache).__name__ == 'NullCache'\n"),
        checks="assert rt.sparse_impl == 'numba', rt.sparse_impl\n")
    want, _ = setup["ref"]["unstructured"]
    assert rel_err(y, want) <= 1e-5
