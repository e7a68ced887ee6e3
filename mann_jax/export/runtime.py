"""Per-frame inference of an exported MANN controller: one character (batch 1) or a crowd (batch N).

Two backends over the same :class:`~mann_jax.export.compact.CompactModel`:

* :class:`NumpyRuntime` — numpy, for engines without JAX; its batch-1 path runs the numba-compiled
  kernels of :mod:`mann_jax.export.compiled_kernels` when numba is installed (a pinned
  dependency) and falls back to scipy.sparse, or plain numpy without scipy, otherwise;
* :class:`JaxRuntime` — jitted JAX.

Both map RAW inputs ``(480,)`` / ``(N, 480)`` to RAW outputs ``(363,)`` / ``(N, 363)`` (normalisation
and denormalisation included) and optionally return the gating coefficients ω. They compute what
the masked dense model computes (``MANN`` in evaluation mode on the pruned weights) to float32
round-off.

Design. Each choice below was picked by timing the alternatives at ONE thread for BLAS / XLA /
onnxruntime (the game setting); the figures are in ``docs/benchmarks.md`` and the measurements and
rejected alternatives behind each choice in ``docs/measurement_log.md``.

* **Mix, never blend, per frame.** The gating coefficients ω are known before the experts run, so
  each expert layer is ``y = sum_k w_k (x alpha_k + beta_k)`` computed as ONE product of the
  vector ``v = [w_1 [x, 1], ..., w_K [x, 1]]`` (length ``K*(in+1)``) with the stacked matrix
  ``A = [alpha_1; beta_1; ...; alpha_K; beta_K]`` (biases folded in as an extra input 1);
  blending would read every expert matrix AND write a blended one per frame.
* **Denormalisation folded** into the last layer (``A`` scaled by ``y_std``; ``y_mean`` added to
  the bias rows, exact up to round-off because ``sum_k w_k = 1``). Input normalisation is NOT
  folded into the first layer (``x / std`` folding would cancel catastrophically for columns with
  large means).
* **Structured pruning**: the matrices are physically smaller (shrunk on export), so the same
  dense kernels run on fewer weights; nothing else is needed.
* **Batch 1, numpy, with numba** (the default when numba imports): the whole frame is ONE
  compiled call (:class:`~mann_jax.export.compiled_kernels.Frame`). Unstructured-pruned layers
  are CSR with a row per output and ``uint16`` column indices (row sums vectorised into AVX2
  gathers); dense layers run compiled axpys. The kernel is chosen per layer by density
  (``kernel="auto"``): sparse below :data:`NUMPY_SPARSE_BELOW`, the measured crossover.
* **Batch 1, numpy, without numba** (``compiled=False`` or numba missing): per-layer numpy calls;
  sparse layers use scipy's CSR product below :data:`SCIPY_SPARSE_BELOW` (its crossover with a
  single-thread gemv), or plain numpy without scipy.
* **Unstructured pruning, batch 1, JAX**: an ELL layout (``(L, out)`` column indices and values,
  padded to the longest row) and ``sum(vals * v[cols], axis=0)``, below :data:`JAX_SPARSE_BELOW`
  density. ``v`` is put behind an ``optimization_barrier`` so that XLA does not recompute
  ``w_k * h_i`` per gathered entry.
* **Batch N**: scipy's CSR times a dense ``(K*(in+1), N)`` block beats the dense gemm only below
  :data:`NUMPY_SPARSE_BELOW_BATCH`; in JAX every gather kernel scales with ``N * nnz`` and loses
  to XLA's gemm, so the batch path is dense (on the shrunk matrices) unless
  ``batch_kernel="sparse"`` is forced.
* Buffers of the batch-1 numpy path are preallocated: a :class:`NumpyRuntime` is not thread-safe;
  use one per thread.

The kernel choice per layer is in ``runtime.kernels`` (batch 1) and ``runtime.batch_kernels``;
what runs the numpy batch-1 sparse layers (``"numba"``, ``"scipy"``, ``"numpy"``) in
``NumpyRuntime.sparse_impl``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mann_jax.export.compact import CompactModel

if TYPE_CHECKING:  # pragma: no cover
    import jax

Kernel = Literal["auto", "dense", "sparse"]
Backend = Literal["numpy", "jax"]

#: Density (non-zeros / entries of the stacked layer matrix) below which the numpy batch-1 path uses
#: the compiled CSR kernel instead of the compiled dense one (:mod:`mann_jax.export.compiled_kernels`;
#: the measured crossover).
NUMPY_SPARSE_BELOW = 0.5
#: The same for scipy's CSR product (the batch-1 sparse kernel without numba).
SCIPY_SPARSE_BELOW = 0.22
#: Same for the numpy batch-N path (scipy CSR times a dense block vs BLAS gemm).
NUMPY_SPARSE_BELOW_BATCH = 0.07
#: Same for the JAX batch-1 path (ELL gather vs XLA gemv).
JAX_SPARSE_BELOW = 0.15


# ----------------------------------------------------------------------------- folding


@dataclasses.dataclass(frozen=True)
class FoldedLayer:
    """One expert layer in the runtime layout.

    Attributes:
        matrix: ``(K*(in+1), out)`` float32: per expert its ``in`` weight rows then its bias row
            (the last layer scaled by ``y_std``, ``y_mean`` added to the bias rows).
        in_features: ``in``.
        n_experts: ``K``.
        nnz: Non-zeros of ``matrix``.
    """

    matrix: np.ndarray
    in_features: int
    n_experts: int
    nnz: int

    @property
    def density(self) -> float:
        return self.nnz / max(self.matrix.size, 1)

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(indptr, indices, data)`` of ``matrix.T`` (a row per output)."""
        m = self.matrix.T
        rows, cols = np.nonzero(m)
        indptr = np.zeros(m.shape[0] + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=m.shape[0]), out=indptr[1:])
        return indptr, cols.astype(np.int32), np.ascontiguousarray(m[rows, cols])

    def ell(self) -> tuple[np.ndarray, np.ndarray]:
        """ELL ``(cols, vals)``, both ``(L, out)``: the l-th non-zero of output o (padded with 0)."""
        indptr, indices, data = self.csr()
        out = len(indptr) - 1
        counts = np.diff(indptr)
        width = max(int(counts.max()) if out else 0, 1)
        cols = np.zeros((width, out), np.int32)
        vals = np.zeros((width, out), np.float32)
        rows = np.repeat(np.arange(out), counts)
        slot = np.arange(len(indices)) - np.repeat(indptr[:-1], counts)
        cols[slot, rows] = indices
        vals[slot, rows] = data
        return cols, vals


def fold(model: CompactModel) -> tuple[list[np.ndarray], list[FoldedLayer]]:
    """Gating matrices ``(in+1, out)`` (bias as last row) and the three folded expert layers."""
    gating = [np.ascontiguousarray(np.vstack([k, b[None, :]]), np.float32) for k, b in model.gating]
    layers = []
    n = model.normalisation
    for l, layer in enumerate(model.layers):
        alpha, beta = layer.dense_alpha(), layer.beta
        if l == 2:
            y_std = np.asarray(n.y_std, np.float32)
            alpha = alpha * y_std
            beta = beta * y_std + np.asarray(n.y_mean, np.float32)
        k, i, o = alpha.shape
        matrix = np.ascontiguousarray(np.concatenate([alpha, beta[:, None, :]], axis=1).reshape(k * (i + 1), o),
                                      dtype=np.float32)
        layers.append(FoldedLayer(matrix=matrix, in_features=i, n_experts=k, nnz=int(np.count_nonzero(matrix))))
    return gating, layers


def _choose(kernel: Kernel, density: float, threshold: float) -> Literal["dense", "sparse"]:
    if kernel == "auto":
        return "sparse" if density < threshold else "dense"
    if kernel not in ("dense", "sparse"):
        raise ValueError(f"kernel must be 'auto', 'dense' or 'sparse', got {kernel!r}")
    return kernel


# ----------------------------------------------------------------------------- numpy


class _NumpyCSR:
    """CSR matrix-vector product in plain numpy (used only when scipy is missing)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
        self.indices = indices.astype(np.intp)
        self.data = data
        self.starts = indptr[:-1].astype(np.intp)
        self.empty = np.diff(indptr) == 0
        self.prods = np.zeros(len(data) + 1, np.float32)  # a trailing 0 keeps every start in range

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        np.multiply(self.data, v[self.indices], out=self.prods[:-1])
        y = np.add.reduceat(self.prods, self.starts)
        y[self.empty] = 0.0
        return y


def _sparse_matrix(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape: tuple[int, int]) -> Any:
    """A scipy CSR array (or the numpy fallback when scipy is not installed)."""
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency; engines may lack it
        return _NumpyCSR(indptr, indices, data)
    return sp.csr_array((data, indices, indptr), shape=shape)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _compiled_kernels() -> Any:
    """:mod:`mann_jax.export.compiled_kernels` when numba imports, else None (imported on first use:
    numba takes ~0.3 s to import)."""
    from mann_jax.export import compiled_kernels

    return compiled_kernels if compiled_kernels.AVAILABLE else None


def _elu_into(y: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
    """``out = elu(y) = max(y, 0) + expm1(min(y, 0))`` (exact; no overflow in the unused branch)."""
    np.minimum(y, 0.0, out=tmp)
    np.expm1(tmp, out=tmp)
    np.maximum(y, 0.0, out=out)
    out += tmp


def _elu(y: np.ndarray) -> np.ndarray:
    return np.maximum(y, 0.0) + np.expm1(np.minimum(y, 0.0))


class NumpyRuntime:
    """The controller in numpy: :meth:`step` for one character, :meth:`batch` for a crowd.

    Args:
        model: The compact model.
        kernel: Batch-1 kernel per expert layer: ``"auto"`` (sparse below :data:`NUMPY_SPARSE_BELOW`
            density with the compiled kernel, below :data:`SCIPY_SPARSE_BELOW` with scipy's; else
            dense), ``"dense"`` or ``"sparse"``.
        batch_kernel: The same for :meth:`batch` (threshold :data:`NUMPY_SPARSE_BELOW_BATCH`;
            its sparse kernel is scipy's).
        compiled: Batch 1 as one numba-compiled call per frame
            (:class:`~mann_jax.export.compiled_kernels.Frame`): ``None`` (default) when numba
            imports, ``True`` (ImportError without numba) or ``False`` (numpy calls per layer:
            scipy's CSR product, or plain numpy without scipy).

    Attributes:
        kernels: ``"dense"`` / ``"sparse"`` per expert layer at batch 1; ``batch_kernels`` the same
            for :meth:`batch`.
        sparse_impl: What runs the batch-1 sparse layers: ``"numba"``, ``"scipy"`` or ``"numpy"``.
        compiled_frame: The :class:`~mann_jax.export.compiled_kernels.Frame` (None without numba).
    """

    def __init__(self, model: CompactModel, *, kernel: Kernel = "auto", batch_kernel: Kernel = "auto",
                 compiled: bool | None = None) -> None:
        self.model = model
        n = model.normalisation
        self._x_mean = np.asarray(n.x_mean, np.float32)
        self._x_std = np.asarray(n.x_std, np.float32)
        self._gidx = np.asarray(model.gating_indices, np.intp)
        self._gating, layers = fold(model)
        self.layers = layers
        kernels_module = _compiled_kernels() if compiled is not False else None
        if compiled and kernels_module is None:
            raise ImportError("NumpyRuntime(compiled=True) needs numba (pip install numba)")
        compiled = kernels_module is not None
        have_scipy = _installed("scipy")
        self.sparse_impl = "numba" if compiled else "scipy" if have_scipy else "numpy"
        below = NUMPY_SPARSE_BELOW if compiled else SCIPY_SPARSE_BELOW
        self.kernels = tuple(_choose(kernel, l.density, below) for l in layers)
        self.batch_kernels = tuple(_choose(batch_kernel, l.density, NUMPY_SPARSE_BELOW_BATCH) for l in layers)
        if not have_scipy:  # pragma: no cover - scipy is a dependency; engines may lack it
            self.batch_kernels = tuple("dense" for _ in layers)  # the numpy fallback has no matrix kernel
        self._dense: list[np.ndarray | None] = []
        self._sparse: list[Any] = []  # scipy / numpy CSR: the batch path's, and batch 1's without numba
        for layer, k1, kn in zip(layers, self.kernels, self.batch_kernels):
            if kn == "sparse" or (k1 == "sparse" and not compiled):
                shape = (layer.matrix.shape[1], layer.matrix.shape[0])
                self._sparse.append(_sparse_matrix(*layer.csr(), shape))
            else:
                self._sparse.append(None)
            self._dense.append(layer.matrix if kn == "dense" or (k1 == "dense" and not compiled) else None)
        # With numba, the whole batch-1 frame is one compiled call (compiled, or loaded from numba's
        # cache, here rather than on the first frame).
        self.compiled_frame: Any = None
        if kernels_module is not None:
            self.compiled_frame = kernels_module.Frame(
                self._x_mean, self._x_std, self._gating, self._gidx,
                [kernels_module.CSRMatrix(l.matrix) if k1 == "sparse" else l.matrix
                 for l, k1 in zip(layers, self.kernels)])
        k = model.n_experts
        widths = [l.in_features for l in layers]
        # Batch-1 buffers: every layer input with a trailing 1 (the folded bias), the mixed vector.
        self._h1 = [np.ones(w + 1, np.float32) for w in widths]
        self._v = [np.empty((k, w + 1), np.float32) for w in widths]
        self._tmp = [np.empty(l.matrix.shape[1], np.float32) for l in layers]
        gh = model.gating_hidden
        self._g1 = [np.ones(len(self._gidx) + 1, np.float32), np.ones(gh + 1, np.float32), np.ones(gh + 1, np.float32)]
        self._gtmp = np.empty(gh, np.float32)

    # -- one character -------------------------------------------------------------------------

    def _gating_one(self, xn1: np.ndarray) -> np.ndarray:
        g0, g1, g2 = self._g1
        np.take(xn1, self._gidx, out=g0[:-1])
        _elu_into(g0 @ self._gating[0], g1[:-1], self._gtmp)
        _elu_into(g1 @ self._gating[1], g2[:-1], self._gtmp)
        logits = g2 @ self._gating[2]
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def step(self, x: Any, *, return_gating: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """One frame of one character.

        Args:
            x: Raw input ``(input_size,)``.
            return_gating: Also return ω ``(n_experts,)``.

        Returns:
            Raw output ``(output_size,)`` (a new array), or ``(y, omega)``.
        """
        x = np.ascontiguousarray(x, np.float32)
        if x.shape != (self.model.input_size,):
            raise ValueError(f"step expects one input of shape ({self.model.input_size},), got {x.shape}")
        if self.compiled_frame is not None:
            y, omega = self.compiled_frame(x)
            return (y.copy(), omega.copy()) if return_gating else y.copy()
        h1 = self._h1[0]
        np.subtract(x, self._x_mean, out=h1[:-1])
        np.divide(h1[:-1], self._x_std, out=h1[:-1])
        omega = self._gating_one(h1)
        y = h1
        for l in range(3):
            h1, v = self._h1[l], self._v[l]
            np.multiply(omega[:, None], h1[None, :], out=v)
            if self.kernels[l] == "dense":
                dense = self._dense[l]
                assert dense is not None  # kept for a dense kernel without the compiled frame (__init__)
                y = v.reshape(-1) @ dense
            else:
                y = self._sparse[l] @ v.reshape(-1)
            if l < 2:
                _elu_into(y, self._h1[l + 1][:-1], self._tmp[l])
        y = np.array(y, np.float32)
        return (y, omega.astype(np.float32)) if return_gating else y

    # -- a crowd --------------------------------------------------------------------------------

    def batch(self, x: Any, *, return_gating: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Many characters at once (feature-major internally: every product is one gemm / CSR block).

        Args:
            x: Raw inputs ``(N, input_size)``.
            return_gating: Also return ω ``(N, n_experts)``.

        Returns:
            Raw outputs ``(N, output_size)``, or ``(y, omega)``.
        """
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.model.input_size:
            raise ValueError(f"batch expects inputs of shape (N, {self.model.input_size}), got {x.shape}")
        n = x.shape[0]
        h = np.ones((self.model.input_size + 1, n), np.float32)
        h[:-1] = ((x - self._x_mean) / self._x_std).T
        g = np.ones((len(self._gidx) + 1, n), np.float32)
        g[:-1] = h[self._gidx]
        for gl in range(2):
            z = _elu(self._gating[gl].T @ g)
            g = np.ones((z.shape[0] + 1, n), np.float32)
            g[:-1] = z
        logits = self._gating[2].T @ g
        e = np.exp(logits - logits.max(axis=0, keepdims=True))
        omega = e / e.sum(axis=0, keepdims=True)  # (K, N)
        k = self.model.n_experts
        y = h
        for l in range(3):
            v = (omega[:, None, :] * h[None, :, :]).reshape(k * h.shape[0], n)
            if self.batch_kernels[l] == "dense":
                dense = self._dense[l]
                assert dense is not None  # kept for a dense batch kernel (__init__)
                y = dense.T @ v
            else:
                y = self._sparse[l] @ v
            if l < 2:
                h = np.ones((y.shape[0] + 1, n), np.float32)
                h[:-1] = _elu(y)
        out = np.ascontiguousarray(y.T, np.float32)
        return (out, np.ascontiguousarray(omega.T, np.float32)) if return_gating else out

    def __call__(self, x: Any, *, return_gating: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """:meth:`step` for a 1-D input, :meth:`batch` for a 2-D one."""
        if np.ndim(x) == 1:
            return self.step(x, return_gating=return_gating)
        return self.batch(x, return_gating=return_gating)


# ----------------------------------------------------------------------------- JAX


def _float32_products(fn: Any) -> Any:
    """``fn`` with float32 matrix products on every backend (NVIDIA GPUs default to TF32), so the
    runtime matches the model to float rounding there too (as ``MANN(matmul_precision="highest")``)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        import jax

        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped


def _jax_forward(arrays: dict[str, Any], x: Any, *, kinds: tuple[str, ...]) -> tuple[Any, Any]:
    """One frame (``x`` 1-D); ``vmap`` it for a batch. Returns ``(y, omega)``."""
    import jax
    import jax.numpy as jnp

    one = jnp.ones((1,), jnp.float32)
    xn = (x - arrays["x_mean"]) / arrays["x_std"]
    g = jnp.concatenate([xn[arrays["gating_indices"]], one])
    g = jnp.concatenate([jax.nn.elu(g @ arrays["gating"][0]), one])
    g = jnp.concatenate([jax.nn.elu(g @ arrays["gating"][1]), one])
    omega = jax.nn.softmax(g @ arrays["gating"][2])
    h = xn
    for l in range(3):
        v = (omega[:, None] * jnp.concatenate([h, one])[None, :]).reshape(-1)
        if kinds[l] == "dense":
            y = arrays["dense_t"][l] @ v  # (out, K*(in+1)) @ v: XLA's gemv is faster than v @ A
        else:
            cols, vals = arrays["ell"][l]
            # Keep v out of the gather's fusion: fused, XLA recomputes w_k * h_i per gathered entry.
            v = jax.lax.optimization_barrier(v)
            y = jnp.sum(vals * v.at[cols].get(mode="promise_in_bounds"), axis=0)
        h = jax.nn.elu(y) if l < 2 else y
    return h, omega


def _jax_forward_batch(arrays: dict[str, Any], x: Any) -> tuple[Any, Any]:
    """A batch (``x`` ``(N, in)``) with the dense mixed gemm per layer. Returns ``(y, omega)``."""
    import jax
    import jax.numpy as jnp

    n = x.shape[0]
    one = jnp.ones((n, 1), jnp.float32)
    xn = (x - arrays["x_mean"]) / arrays["x_std"]
    g = jnp.concatenate([xn[:, arrays["gating_indices"]], one], axis=1)
    g = jnp.concatenate([jax.nn.elu(g @ arrays["gating"][0]), one], axis=1)
    g = jnp.concatenate([jax.nn.elu(g @ arrays["gating"][1]), one], axis=1)
    omega = jax.nn.softmax(g @ arrays["gating"][2], axis=-1)
    h = xn
    for l in range(3):
        h1 = jnp.concatenate([h, one], axis=1)
        v = (omega[:, :, None] * h1[:, None, :]).reshape(n, -1)
        y = v @ arrays["dense"][l]
        h = jax.nn.elu(y) if l < 2 else y
    return h, omega


class JaxRuntime:
    """The controller in JAX (jitted): :meth:`step` for one character, :meth:`batch` for a crowd.

    Args:
        model: The compact model.
        kernel: Batch-1 kernel per expert layer: ``"auto"`` (ELL below :data:`JAX_SPARSE_BELOW`
            density, else dense), ``"dense"`` or ``"sparse"``.
        batch_kernel: ``"auto"``/``"dense"`` (the mixed gemm on the shrunk matrices) or
            ``"sparse"`` (the batch-1 kernels vmapped; slower, for checking).
    """

    def __init__(self, model: CompactModel, *, kernel: Kernel = "auto", batch_kernel: Kernel = "auto") -> None:
        import jax
        import jax.numpy as jnp

        self.model = model
        gating, layers = fold(model)
        self.layers = layers
        self.kernels = tuple(_choose(kernel, l.density, JAX_SPARSE_BELOW) for l in layers)
        if batch_kernel == "auto":
            batch_kernel = "dense"
        self.batch_kernels = tuple(_choose(batch_kernel, l.density, 0.0) for l in layers)
        n = model.normalisation
        arrays: dict[str, Any] = {
            "x_mean": jnp.asarray(n.x_mean, jnp.float32),
            "x_std": jnp.asarray(n.x_std, jnp.float32),
            "gating_indices": jnp.asarray(model.gating_indices, jnp.int32),
            "gating": [jnp.asarray(g) for g in gating],
            "dense": [jnp.asarray(l.matrix) if kn == "dense" else None for l, kn in zip(layers, self.batch_kernels)],
            "dense_t": [jnp.asarray(np.ascontiguousarray(l.matrix.T)) if k1 == "dense" else None
                        for l, k1 in zip(layers, self.kernels)],
            "ell": [tuple(jnp.asarray(a) for a in l.ell()) if "sparse" in (k1, kn) else None
                    for l, k1, kn in zip(layers, self.kernels, self.batch_kernels)],
        }
        self.arrays = arrays
        self._step = jax.jit(_float32_products(functools.partial(_jax_forward, kinds=self.kernels)))
        if all(k == "dense" for k in self.batch_kernels):
            self._batch = jax.jit(_float32_products(_jax_forward_batch))
        else:
            one = functools.partial(_jax_forward, kinds=self.batch_kernels)
            self._batch = jax.jit(_float32_products(jax.vmap(one, in_axes=(None, 0))))

    def step(self, x: Any, *, return_gating: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        """One frame of one character: raw ``(input_size,)`` -> raw ``(output_size,)`` (and ω)."""
        if np.shape(x) != (self.model.input_size,):
            raise ValueError(f"step expects one input of shape ({self.model.input_size},), got {np.shape(x)}")
        y, omega = self._step(self.arrays, x)
        return (y, omega) if return_gating else y

    def batch(self, x: Any, *, return_gating: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Many characters: raw ``(N, input_size)`` -> raw ``(N, output_size)`` (and ω ``(N, K)``)."""
        if np.ndim(x) != 2 or np.shape(x)[1] != self.model.input_size:
            raise ValueError(f"batch expects inputs of shape (N, {self.model.input_size}), got {np.shape(x)}")
        y, omega = self._batch(self.arrays, x)
        return (y, omega) if return_gating else y

    def __call__(self, x: Any, *, return_gating: bool = False) -> Any:
        """:meth:`step` for a 1-D input, :meth:`batch` for a 2-D one."""
        if np.ndim(x) == 1:
            return self.step(x, return_gating=return_gating)
        return self.batch(x, return_gating=return_gating)


def make_runtime(model: CompactModel, *, backend: Backend = "numpy", kernel: Kernel = "auto",
                 batch_kernel: Kernel = "auto") -> NumpyRuntime | JaxRuntime:
    """A :class:`NumpyRuntime` or :class:`JaxRuntime` of ``model``."""
    if backend == "numpy":
        return NumpyRuntime(model, kernel=kernel, batch_kernel=batch_kernel)
    if backend == "jax":
        return JaxRuntime(model, kernel=kernel, batch_kernel=batch_kernel)
    raise ValueError(f"backend must be 'numpy' or 'jax', got {backend!r}")
