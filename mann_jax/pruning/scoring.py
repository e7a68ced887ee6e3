"""Pruning scores by name, and exact-count selection of the lowest-scoring weights.

A score function maps one parameter array (with its gradient and a PRNG key) to an array of the
same shape; the LOWEST scores are pruned first. :data:`SCORES` is a plain dict registry:

* ``"magnitude"``: ``|w|`` (the study's L1 criterion).
* ``"random"``: ``U[0, 1)`` from the key (the pruning wrapper derives it from its ``seed``, the
  step count and the leaf index, so a run is reproducible).

Movement pruning (Sanh et al. 2020) needs scores accumulated over many steps and is left out; any
function ``(param, grad, key) -> scores`` can be added with :func:`register_score` (the wrapper
passes the current gradient).

Selection is exact and deterministic:

* :func:`count_for_sparsity`: ``k = round(s * n)`` computed EXACTLY on device for a traced
  float32 ``s`` (round half to even, as Python's ``round``): the float32 product ``s * n`` would
  itself be rounded to a multiple of 0.5 for ``n`` of a few million and could miss by one.
  :func:`pruned_count` is the host-side reference (exact rational arithmetic).
* :func:`lowest_k`: a mask of exactly ``k`` (traced) entries with the lowest scores, ties broken
  by flat index (lower index pruned first). It finds the ``k``-th smallest score digit by digit
  over the order-preserving ``uint32`` image of the float32 scores (a radix select: each pass
  counts the keys at or below ``2**bits - 1`` candidate thresholds and fixes ``bits`` bits of the
  answer, ``32 / bits`` passes over the scores; with 16 bits, two passes that each histogram a
  16-bit digit with a scatter-add instead), then breaks ties at that value with a cumulative sum,
  which only runs when tied entries straddle the boundary. ``bits`` is chosen per backend
  (:data:`RADIX_BITS`, measured): on CPU 16 bits (two histogram passes); on GPU 4 bits (8 passes
  with 15 thresholds each, counted as one row reduction per threshold, since XLA:GPU's
  scatter-add is slower).
  No library offers an exact, traced-``k`` selection with this tie rule: ``lax.top_k`` needs a
  static ``k`` and ``jnp.sort``/``argsort`` cost a full sort.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mann_jax.config_errors import ConfigError

#: ``(param, grad, key) -> scores`` of ``param``'s shape; the lowest scores are pruned first.
ScoreFn = Callable[[jax.Array, "jax.Array | None", jax.Array], jax.Array]


def magnitude(param: jax.Array, grad: jax.Array | None, key: jax.Array) -> jax.Array:
    """``|w|``: the L1 magnitude criterion."""
    del grad, key
    return jnp.abs(param).astype(jnp.float32)


def random(param: jax.Array, grad: jax.Array | None, key: jax.Array) -> jax.Array:
    """Uniform ``[0, 1)`` scores drawn from ``key`` (random pruning baseline)."""
    del grad
    return jax.random.uniform(key, param.shape, jnp.float32)


SCORES: dict[str, ScoreFn] = {"magnitude": magnitude, "random": random}


def register_score(name: str, fn: ScoreFn, *, overwrite: bool = False) -> None:
    """Adds ``fn`` to :data:`SCORES` under ``name``.

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is false.
    """
    if name in SCORES and not overwrite:
        raise ValueError(f"score {name!r} is already registered (pass overwrite=True to replace it)")
    SCORES[name] = fn


def get_score(name: str) -> ScoreFn:
    """The registered score function ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return SCORES[name]
    except KeyError:
        raise ConfigError(f"unknown pruning criterion {name!r}; known: {sorted(SCORES)}") from None


# ----------------------------------------------------------------------------------------------
# Exact counts
# ----------------------------------------------------------------------------------------------


def pruned_count(sparsity: float, n: int) -> int:
    """Host reference: ``round(s * n)`` (half to even) for ``s = float32(sparsity)`` clipped to [0, 1]."""
    s = min(max(float(np.float32(sparsity)), 0.0), 1.0)
    return int(round(Fraction(s) * int(n)))


def _mul_wide(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``a * b`` of two uint32 arrays as a 64-bit ``(hi, lo)`` pair of uint32 (16-bit limbs)."""
    m16 = jnp.uint32(0xFFFF)
    a0, a1 = a & m16, a >> 16
    b0, b1 = b & m16, b >> 16
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> 16) + (p01 & m16) + (p10 & m16)
    lo = (p00 & m16) | ((mid & m16) << 16)
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    return hi, lo


def count_for_sparsity(sparsity: jax.Array | float, n: jax.Array | int) -> jax.Array:
    """Exactly ``round(s * n)`` (half to even) as int32, for a traced float32 ``s`` in [0, 1].

    ``s`` is clipped to [0, 1]. With ``s = m * 2**-q`` (``m`` the 24-bit significand) the product
    ``m * n`` is formed exactly in two uint32 words and shifted right by ``q`` with rounding, so
    the result equals :func:`pruned_count` for every float32 ``s`` and ``0 <= n < 2**31`` (``n``
    is usually a Python int, but may be traced).
    """
    if isinstance(n, (int, np.integer)) and not 0 <= int(n) < 2**31:
        raise ValueError(f"count_for_sparsity needs 0 <= n < 2**31, got {n}")
    n = jnp.asarray(n).astype(jnp.uint32)
    s = jnp.clip(jnp.asarray(sparsity, jnp.float32), 0.0, 1.0)
    bits = lax.bitcast_convert_type(s, jnp.uint32)
    exponent = ((bits >> 23) & jnp.uint32(0xFF)).astype(jnp.int32)
    fraction = bits & jnp.uint32(0x7FFFFF)
    m = jnp.where(exponent == 0, fraction, fraction | jnp.uint32(0x800000))
    q = jnp.where(exponent == 0, 149, 150 - exponent)  # s = m * 2**-q, q >= 23 for s <= 1
    hi, lo = _mul_wide(m, n)
    one = jnp.uint32(1)
    # q < 32: the quotient takes bits from both words; the remainder lies in lo alone.
    qa = jnp.clip(q, 1, 31).astype(jnp.uint32)
    quot_a = (hi << (32 - qa)) | (lo >> qa)
    rem_hi_a, rem_lo_a = jnp.uint32(0), lo & ((one << qa) - one)
    half_hi_a, half_lo_a = jnp.uint32(0), one << (qa - one)
    # 32 <= q < 64: the quotient comes from hi alone.
    sb = jnp.clip(q - 32, 0, 31).astype(jnp.uint32)
    quot_b = hi >> sb
    rem_hi_b, rem_lo_b = hi & ((one << sb) - one), lo
    half_hi_b = jnp.where(sb == 0, jnp.uint32(0), one << jnp.maximum(sb, one) - one)
    half_lo_b = jnp.where(sb == 0, jnp.uint32(0x80000000), jnp.uint32(0))
    small = q < 32
    quot = jnp.where(small, quot_a, quot_b)
    rem_hi, rem_lo = jnp.where(small, rem_hi_a, rem_hi_b), jnp.where(small, rem_lo_a, rem_lo_b)
    half_hi, half_lo = jnp.where(small, half_hi_a, half_hi_b), jnp.where(small, half_lo_a, half_lo_b)
    above = (rem_hi > half_hi) | ((rem_hi == half_hi) & (rem_lo > half_lo))
    tie = (rem_hi == half_hi) & (rem_lo == half_lo)
    k = quot + (above | (tie & ((quot & one) == one))).astype(jnp.uint32)
    k = jnp.where(q >= 64, jnp.uint32(0), k)  # m * n < 2**55, so s * n < 2**-9
    return jnp.minimum(k, n).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# Exact selection
# ----------------------------------------------------------------------------------------------


def sortable_keys(scores: jax.Array) -> jax.Array:
    """uint32 keys with the same order as the float32 ``scores`` (-inf lowest; NaN unspecified)."""
    bits = lax.bitcast_convert_type(jnp.asarray(scores, jnp.float32), jnp.uint32)
    negative = (bits >> 31) == 1
    return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def _any_over(pred: jax.Array, axis_name: str | None) -> jax.Array:
    """``pred`` or'ed over the named ``jax.vmap`` axis (so ``lax.cond`` stays a real branch)."""
    if axis_name is None:
        return pred
    return lax.pmax(pred.astype(jnp.int32), axis_name) > 0


#: Digit widths :func:`kth_smallest_key` accepts.
RADIX_WIDTHS: tuple[int, ...] = (1, 2, 4, 8, 16)
#: Radix-select digit width per backend, the fastest width ``python -m experiments.bench_select``
#: measures for the whole selection over the 8x512 model's 5.55 M expert weights: 16 bits (two
#: histogram passes) on CPU; 4 bits on GPU, whose atomic scatter-adds make histograms slow. Figures
#: and the alternatives tried: ``docs/benchmarks.md`` and ``docs/measurement_log.md``.
RADIX_BITS: dict[str, int] = {"cpu": 16, "gpu": 4, "tpu": 4}


def default_radix_bits(platform: str | None = None) -> int:
    """Bits fixed per pass of :func:`lowest_k` on ``platform`` (default: JAX's default backend)."""
    return RADIX_BITS.get(platform or jax.default_backend(), 1)


def kth_smallest_key(keys: jax.Array, k: jax.Array, *, bits: int) -> jax.Array:
    """The ``k``-th smallest (1-based, ``k >= 1``) of the 1-D uint32 ``keys``, ``bits`` bits per pass.

    Pass ``p`` knows the answer's top ``p * bits`` bits (``prefix``). With ``bits`` <= 8 it counts
    the keys at or below each candidate ``prefix | d << shift | (1 << shift) - 1`` for
    ``d = 0 .. 2**bits - 2`` (the last digit's count is always >= k) and takes as the next digit the
    number of candidates with fewer than ``k`` keys at or below them. With ``bits = 16`` each of
    the two passes instead histograms (scatter-add) the next digit of the keys that share the
    prefix. Exact for any ``k`` in ``[1, len(keys)]``.
    """
    if bits not in RADIX_WIDTHS:
        raise ValueError(f"radix bits must be one of {RADIX_WIDTHS}, got {bits}")
    if bits == 16:
        return _kth_smallest_key_by_histogram(keys, k, bits=bits)
    digits = jnp.arange((1 << bits) - 1, dtype=jnp.uint32)

    def one_pass(p: jax.Array, prefix: jax.Array) -> jax.Array:
        shift = jnp.uint32(32 - bits) - jnp.uint32(bits) * p.astype(jnp.uint32)
        candidates = prefix | (digits << shift) | ((jnp.uint32(1) << shift) - jnp.uint32(1))
        if bits == 1:  # one candidate: a plain reduction (XLA:CPU runs it faster than a [1, n] one)
            counts = jnp.sum(keys <= candidates[0], dtype=jnp.int32)[None]
        else:
            # One row per candidate: XLA:GPU's row reduction ran the 4-bit pass 3x faster on an
            # H100 than the same counts laid out as [n, candidates] and reduced over axis 0.
            counts = jnp.sum(keys[None, :] <= candidates[:, None], axis=1, dtype=jnp.int32)
        digit = jnp.sum(counts < k, dtype=jnp.uint32)
        return prefix | (digit << shift)

    return lax.fori_loop(0, 32 // bits, one_pass, jnp.uint32(0))


def _kth_smallest_key_by_histogram(keys: jax.Array, k: jax.Array, *, bits: int) -> jax.Array:
    """:func:`kth_smallest_key` with ``32 / bits`` passes that each histogram one ``bits``-bit digit."""
    n_bins = 1 << bits
    prefix, rank = jnp.uint32(0), k  # rank: the answer's rank among the keys sharing ``prefix``
    for p in range(32 // bits):
        shift = 32 - bits * (p + 1)
        digits = ((keys >> shift) & jnp.uint32(n_bins - 1)).astype(jnp.int32)
        if p == 0:
            ones = jnp.ones(keys.shape, jnp.int32)
        else:
            ones = ((keys >> (shift + bits)) == (prefix >> (shift + bits))).astype(jnp.int32)
        histogram = jnp.zeros(n_bins, jnp.int32).at[digits].add(ones, mode="promise_in_bounds")
        at_or_below = jnp.cumsum(histogram)
        digit = jnp.sum(at_or_below < rank, dtype=jnp.int32)
        rank = rank - jnp.where(digit > 0, at_or_below[jnp.maximum(digit - 1, 0)], 0)
        prefix = prefix | (digit.astype(jnp.uint32) << shift)
    return prefix


def lowest_k(scores: jax.Array, k: jax.Array | int, *, axis_name: str | None = None,
             bits: int | None = None) -> jax.Array:
    """Boolean mask (True = selected) of exactly ``k`` entries of a 1-D ``scores`` with the lowest values.

    Ties are broken by position: among equal scores the lower index is selected first. ``k`` may be
    traced; it is clipped to ``[0, len(scores)]``.

    Args:
        scores: 1-D float32 scores.
        k: Number of entries to select.
        axis_name: Name of an enclosing ``jax.vmap`` axis, if any: the tie-break branch then runs
            when any mapped instance needs it instead of turning into a select that always runs.
        bits: Radix-select digit width (one of :data:`RADIX_WIDTHS`; default
            :func:`default_radix_bits`). Every width gives the same mask; it only changes the speed.

    Returns:
        A bool array of ``scores``' shape with exactly ``k`` True entries.
    """
    if scores.ndim != 1:
        raise ValueError(f"lowest_k expects 1-D scores, got shape {scores.shape}")
    n = scores.shape[0]
    k = jnp.clip(jnp.asarray(k, jnp.int32), 0, n)
    if n == 0:
        return jnp.zeros((0,), bool)
    keys = sortable_keys(scores)
    # The k-th smallest key (the smallest v with #{keys <= v} >= k).
    v = kth_smallest_key(keys, jnp.maximum(k, 1), bits=default_radix_bits() if bits is None else bits)
    below = keys < v
    at = keys == v
    needed = k - jnp.sum(below, dtype=jnp.int32)  # how many of the tied entries to take
    n_at = jnp.sum(at, dtype=jnp.int32)
    straddle = _any_over((n_at > needed) & (k > 0), axis_name)  # k = 0 selects nothing: no tie-break
    take_at = lax.cond(
        straddle,
        lambda: at & (jnp.cumsum(at, dtype=jnp.int32) <= needed),
        lambda: at,
    )
    return (below | take_at) & (k > 0)
