"""The numba-compiled batch-1 frame of :class:`~mann_jax.export.runtime.NumpyRuntime`.

:class:`Frame` runs a whole frame of one character in ONE compiled call: input normalisation,
the gating network (ω), and the three expert layers ``out = [elu](A^T v)`` with
``v = omega ⊗ [h, 1]`` built inside the kernel and ``A`` the stacked ``(K*(in+1), out)`` matrix of
:class:`~mann_jax.export.runtime.FoldedLayer`, each layer either

* sparse — :class:`CSRMatrix`: CSR with a row per output and ``uint16`` column indices (``int32``
  beyond 65536 rows), a vectorised gather-multiply-add over the non-zeros; or
* dense — the float32 matrix, axpys over its rows four at a time.

numba is a pinned dependency; without it :data:`AVAILABLE` is False and the runtime runs its numpy
path (scipy's CSR product for sparse layers, plain numpy without scipy).

Why a hand-written sparse kernel: the work is a gather-multiply-add over the non-zeros, and no
maintained library offers a vectorised float32 sparse matrix-vector product for batch 1 at these
sizes (scipy's ``csr_matvec`` is a scalar loop with ``int32`` indices; XLA's CPU gather and
``np.take`` + ``einsum`` are slower still). The row loop of :func:`_csr_product`, compiled by
numba, is vectorised by LLVM into 8-wide ``vgatherdps`` + ``vfmadd231ps`` with four accumulators
(``tests/test_runtime.py`` checks the gathers are in the machine code on AVX2 machines); the
gathers, not the bytes, bound it. Each row is sliced first (``data[start:stop][p]``, ``p >= 0``
provably), because numba's negative-index wraparound on a signed offset defeats the vectoriser.
``uint16`` indices are zero-extended, which lets LLVM use 32-bit-index gathers (numba
sign-extends ``int32`` to 64 bits, half as many per instruction), and save 2 bytes per non-zero.
The ELU is a second, branch-free pass (:func:`_elu`), not a branch in the row loop. The gating
network and the dense layers (four-row axpys) are compiled too, so one call per frame replaces
~16 numpy calls. Measurements and the layouts tried (SELL, jagged diagonals, padding, prefetch):
``docs/measurement_log.md``.

The first :class:`Frame` of a process compiles its kernels (seconds);
``cache=True`` stores the machine code in numba's cache (``__pycache__`` next to this file, else
the user's cache directory, or ``NUMBA_CACHE_DIR``), from which later processes load it
quickly. Where no cache location is writable (a read-only install without a writable home) the
kernels are compiled in every process instead. :class:`Frame` runs itself once when built, so no
frame pays the compilation. The kernels release the GIL; a :class:`Frame` is not thread-safe (it
owns its buffers).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Whether the compiled kernels can be used (numba imports).
AVAILABLE: bool
try:
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover - numba is a dependency; engines may lack it
    AVAILABLE = False

#: Column indices are stored as ``uint16`` (2 bytes per non-zero) up to this many rows of the
#: stacked matrix, as ``int32`` beyond.
UINT16_ROWS = 1 << 16

# fastmath reassoc: lets LLVM split the row sums over vector lanes (the vectorisation); contract:
# FMAs. Not the full fast-math set: no assumptions about NaN / inf values.
_OPTIONS: dict[str, Any] = dict(fastmath={"reassoc", "contract"}, nogil=True, error_model="numpy", boundscheck=False)


def _njit(fn: Any) -> Any:
    """``numba.njit`` with the kernels' options, cached on disk where a cache location is writable."""
    try:
        return numba.njit(cache=True, **_OPTIONS)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available" (nowhere writable)
        return numba.njit(cache=False, **_OPTIONS)(fn)


def _mix(h1: np.ndarray, omega: np.ndarray, v: np.ndarray) -> None:
    """``v[:K*n] = omega ⊗ h1`` (the mixed layer input; ``h1`` ends with the bias input 1)."""
    n = h1.shape[0]
    for k in range(omega.shape[0]):
        w = omega[k]
        vk = v[k * n:(k + 1) * n]
        for j in range(n):
            vk[j] = w * h1[j]


def _csr_product(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``out[o] = sum_p data[p] * v[indices[p]]`` over row ``o``'s non-zeros (CSR, a row per output)."""
    for o in range(out.shape[0]):
        start = indptr[o]
        stop = indptr[o + 1]
        # Slices, indexed from 0: the offsets are provably non-negative, so numba emits no
        # wraparound select and LLVM vectorises the sum into gathers.
        vals = data[start:stop]
        cols = indices[start:stop]
        acc = np.float32(0.0)
        for p in range(stop - start):
            acc += vals[p] * v[cols[p]]
        out[o] = acc


def _dense_product(matrix: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    """``out = v[:rows] @ matrix``: axpys over the rows, four rows per pass over ``out``."""
    out[:] = 0
    rows = matrix.shape[0]
    top = rows - rows % 4
    for j in range(0, top, 4):
        a0, a1, a2, a3 = v[j], v[j + 1], v[j + 2], v[j + 3]
        m0, m1, m2, m3 = matrix[j], matrix[j + 1], matrix[j + 2], matrix[j + 3]
        for o in range(out.shape[0]):
            out[o] += a0 * m0[o] + a1 * m1[o] + a2 * m2[o] + a3 * m3[o]
    for j in range(top, rows):
        a0 = v[j]
        m0 = matrix[j]
        for o in range(out.shape[0]):
            out[o] += a0 * m0[o]


def _elu(out: np.ndarray) -> None:
    """``out = max(out, 0) + expm1(min(out, 0))`` in place (branch-free: a data-dependent branch per
    output cost ~10 us per frame)."""
    zero = np.float32(0.0)
    for o in range(out.shape[0]):
        t = out[o]
        out[o] = max(t, zero) + math.expm1(min(t, zero))


def _layer(h1: np.ndarray, omega: np.ndarray, matrix: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
           data: np.ndarray, v: np.ndarray, out: np.ndarray, elu: bool) -> None:
    """One expert layer: ``out = [elu](A^T (omega ⊗ h1))``, ``A`` as CSR (``indptr`` non-empty) or dense."""
    _mix(h1, omega, v)
    if indptr.shape[0] == 0:
        _dense_product(matrix, v, out)
    else:
        _csr_product(indptr, indices, data, v, out)
    if elu:
        _elu(out)


def _gating(h1: np.ndarray, gidx: np.ndarray, g0: np.ndarray, g1: np.ndarray, g2: np.ndarray,
            a: np.ndarray, b: np.ndarray, omega: np.ndarray) -> None:
    """``omega = softmax(elu(elu([h1[gidx], 1] g0) g1) g2)`` (biases as the matrices' last rows)."""
    m = gidx.shape[0]
    for i in range(m):
        a[i] = h1[gidx[i]]
    a[m] = 1
    for g in (g0, g1):
        n_out = g.shape[1]
        _dense_product(g, a, b[:n_out])
        _elu(b[:n_out])
        a[:n_out] = b[:n_out]
        a[n_out] = 1
    k = g2.shape[1]
    _dense_product(g2, a, omega)
    top = omega[0]
    for o in range(1, k):
        top = max(top, omega[o])
    total = np.float32(0.0)
    for o in range(k):
        e = math.exp(omega[o] - top)
        omega[o] = e
        total += e
    for o in range(k):
        omega[o] /= total


def _frame(x: np.ndarray, x_mean: np.ndarray, x_std: np.ndarray, gidx: np.ndarray, g0: np.ndarray,
           g1: np.ndarray, g2: np.ndarray, ga: np.ndarray, gb: np.ndarray, omega: np.ndarray, h0: np.ndarray,
           h1: np.ndarray, h2: np.ndarray, y: np.ndarray, v: np.ndarray,
           m0: np.ndarray, ip0: np.ndarray, ix0: np.ndarray, d0: np.ndarray,
           m1: np.ndarray, ip1: np.ndarray, ix1: np.ndarray, d1: np.ndarray,
           m2: np.ndarray, ip2: np.ndarray, ix2: np.ndarray, d2: np.ndarray) -> None:
    """A whole frame: normalisation, gating (into ``omega``), three expert layers (into ``y``)."""
    for i in range(x.shape[0]):
        h0[i] = (x[i] - x_mean[i]) / x_std[i]
    _gating(h0, gidx, g0, g1, g2, ga, gb, omega)
    _layer(h0, omega, m0, ip0, ix0, d0, v, h1[:-1], True)
    _layer(h1, omega, m1, ip1, ix1, d1, v, h2[:-1], True)
    _layer(h2, omega, m2, ip2, ix2, d2, v, y, False)


if AVAILABLE:  # each compiles on first use (or loads its machine code from numba's cache)
    _mix = _njit(_mix)
    _csr_product = _njit(_csr_product)
    _dense_product = _njit(_dense_product)
    _elu = _njit(_elu)
    _layer = _njit(_layer)
    _gating = _njit(_gating)
    _frame = _njit(_frame)


def _require() -> None:
    if not AVAILABLE:
        raise RuntimeError("the compiled kernels need numba (pip install numba)")


_NO_MATRIX = np.empty((0, 0), np.float32)
_NO_CSR = (np.empty(0, np.int32), np.empty(0, np.uint16), np.empty(0, np.float32))


class CSRMatrix:
    """A stacked expert-layer matrix in the sparse kernel's layout.

    CSR of ``matrix.T`` (a row per output), ``int32`` row pointers, ``uint16`` column indices
    (``int32`` beyond :data:`UINT16_ROWS` rows), float32 values.

    Args:
        matrix: The stacked ``(K*(in+1), out)`` float32 matrix (``FoldedLayer.matrix``).
    """

    def __init__(self, matrix: np.ndarray) -> None:
        rows, out = matrix.shape
        m = np.asarray(matrix, np.float32).T
        o_idx, cols = np.nonzero(m)  # row-major order: by output, then by column
        self.shape = (rows, out)
        self.indptr = np.zeros(out + 1, np.int32)
        np.cumsum(np.bincount(o_idx, minlength=out), out=self.indptr[1:])
        self.indices = cols.astype(np.uint16 if rows <= UINT16_ROWS else np.int32)
        self.data = np.ascontiguousarray(m[o_idx, cols])

    @property
    def nbytes(self) -> int:
        """Bytes the kernel reads per frame (values, indices, row pointers)."""
        return self.data.nbytes + self.indices.nbytes + self.indptr.nbytes


def _layer_args(matrix: np.ndarray | CSRMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(matrix, CSRMatrix):
        return (_NO_MATRIX, matrix.indptr, matrix.indices, matrix.data)
    return (np.ascontiguousarray(matrix, np.float32), *_NO_CSR)


def mixed_layer(h1: np.ndarray, omega: np.ndarray, matrix: np.ndarray | CSRMatrix, out: np.ndarray, *,
                elu: bool) -> np.ndarray:
    """One expert layer, ``out = [elu](A^T (omega ⊗ h1))`` (:class:`Frame` runs three in one call).

    Args:
        h1: The layer input with its trailing 1, ``(in+1,)`` float32, C-contiguous.
        omega: Gating coefficients ``(K,)`` float32.
        matrix: ``A``, ``(K*(in+1), out)``: a float32 array (dense kernel) or a :class:`CSRMatrix`.
        out: ``(out,)`` float32, C-contiguous (may be a view), written in place.
        elu: Apply the ELU.

    Returns:
        ``out``.
    """
    _require()
    rows = matrix.shape[0]
    if rows != len(omega) * len(h1):
        raise ValueError(f"matrix has {rows} rows, omega ⊗ h1 {len(omega) * len(h1)} entries")
    _layer(h1, omega, *_layer_args(matrix), np.empty(rows, np.float32), out, elu)
    return out


class Frame:
    """A model's whole batch-1 frame (normalisation, gating, three expert layers) in one compiled call.

    The per-frame overhead is one dispatch (~4 us for its 27 arrays); a frame of per-layer compiled
    calls measured the same on the unstructured model, the numpy calls it replaces (gating, mix,
    ELU, dense products) cost more.

    Args:
        x_mean, x_std: Input normalisation ``(in,)``.
        gating: The three gating matrices ``(in+1, out)`` (biases as last rows), as
            :func:`~mann_jax.export.runtime.fold` returns them.
        gating_indices: The input features the gating network reads.
        layers: The three stacked expert matrices ``(K*(in+1), out)``, each a float32 array (dense
            kernel) or a :class:`CSRMatrix` (sparse kernel); denormalisation folded into the last.

    Raises:
        RuntimeError: numba is not installed (check :data:`AVAILABLE` first).
    """

    def __init__(self, x_mean: np.ndarray, x_std: np.ndarray, gating: list[np.ndarray], gating_indices: Any,
                 layers: list[np.ndarray | CSRMatrix]) -> None:
        _require()
        if len(gating) != 3 or len(layers) != 3:
            raise ValueError(f"expected 3 gating and 3 expert matrices, got {len(gating)} and {len(layers)}")
        g = [np.ascontiguousarray(m, np.float32) for m in gating]
        k = g[2].shape[1]
        widths = [m.shape[0] // k for m in layers]  # in+1 per layer
        if any(m.shape[0] != k * w for m, w in zip(layers, widths)):
            raise ValueError("expert matrices must have K*(in+1) rows")
        self.layers = list(layers)
        self.omega = np.empty(k, np.float32)
        self.y = np.empty(layers[2].shape[1], np.float32)
        h = [np.ones(w, np.float32) for w in widths]  # layer inputs with their trailing 1
        scratch = max(len(gating_indices), g[0].shape[1], g[1].shape[1]) + 1
        self._args: tuple[np.ndarray, ...] = (
            np.ascontiguousarray(x_mean, np.float32), np.ascontiguousarray(x_std, np.float32),
            np.ascontiguousarray(gating_indices, np.int64), *g,
            np.empty(scratch, np.float32), np.empty(scratch, np.float32), self.omega, *h, self.y,
            np.empty(max(m.shape[0] for m in layers), np.float32),
            *(a for m in layers for a in _layer_args(m)),
        )
        self.in_features = len(self._args[0])
        self(self._args[0])  # compile now (or load numba's cached code), not on the first frame

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw input ``(in,)`` float32 -> ``(y, omega)``: raw output and ω, views of this object's
        buffers (overwritten by the next call)."""
        _frame(x, *self._args)
        return self.y, self.omega
