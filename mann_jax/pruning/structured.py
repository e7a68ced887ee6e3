"""Structured pruning granularities for the MANN: whole hidden units, and n:m groups.

**Neurons** (``granularity="neuron"``). A hidden unit ``j`` of hidden layer ``h`` is removed from
EVERY expert at once: column ``j`` of the producing layer's ``alpha``, ``beta[:, j]``, and row ``j``
of the next layer's ``alpha`` are zero. The unit then outputs ``elu(0) = 0`` whatever the input, so
:func:`shrink` can delete it physically and the smaller MANN computes exactly what the masked one
does. A unit's score sums the element scores of its incoming and outgoing weights over all experts
(``"magnitude"``: their L1 norm); ``target_sparsity`` is the fraction of hidden UNITS removed.
Pruned units are never revived (they score ``-inf``).

* ``scope="local"``: each layer on its own, ``min(round(s * H_h), H_h - 1)`` units of layer ``h``.
* ``scope="global"``: both layers ranked together on **layer-normalised** scores (a unit's score
  over the mean absolute score of its layer's alive units, :func:`normalise_layer`), since raw
  scores differ in scale by layer (Molchanov et al. 2017's normalisation, with the mean instead of
  the L2 norm so a layer's width does not shift its scores; why, with the measurements:
  ``docs/pruning.md``). The best unit of each layer is protected: exactly
  ``min(round(s * (H0 + H1)), H0 + H1 - 2)`` units pruned, and no layer is ever emptied.

The neuron masks live in the pruning state as full-shape bool masks of the five leaves a unit
touches; :func:`units_from_masks` reads the unit vectors back (from the ``beta`` masks).

**n:m** (``granularity="n:m"``, e.g. 2:4). In every group of ``m`` consecutive weights along the
INPUT dimension (``alpha[k, i:i+m, o]``) the ``n`` largest scores are kept (ties: the lower input
index is pruned first). The sparsity is fixed at ``1 - n / m``, so the pattern is applied whole on
the first mask update whose scheduled sparsity is above 0, and later updates leave it unchanged.
``target_sparsity`` must be 0 or ``1 - n / m``; the input dimension must be a multiple of ``m``.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from mann_jax.pruning.scoring import count_for_sparsity, lowest_k

Scope = Literal["global", "local"]
Params = dict[str, Any]

#: Leaves a hidden unit touches, as (layer, name) pairs.
NEURON_LEAVES: tuple[tuple[str, str], ...] = (
    ("layer0", "alpha"), ("layer0", "beta"), ("layer1", "alpha"), ("layer1", "beta"), ("layer2", "alpha"),
)


def check_mann_params(params: Params) -> tuple[int, int]:
    """Checks that ``params`` holds a MANN's three expert layers; returns the hidden sizes.

    Raises:
        ValueError: missing layers or inconsistent shapes.
    """
    try:
        a0, a1, a2 = (params[f"layer{i}"]["alpha"] for i in range(3))
        b0, b1 = params["layer0"]["beta"], params["layer1"]["beta"]
    except (KeyError, TypeError):
        raise ValueError("neuron pruning needs MANN parameters with layer0/1/2 holding 'alpha' and 'beta'") from None
    h0, h1 = a0.shape[-1], a1.shape[-1]
    if a0.ndim != 3 or a1.shape[-2] != h0 or a2.shape[-2] != h1 or b0.shape[-1] != h0 or b1.shape[-1] != h1:
        raise ValueError(
            f"inconsistent MANN shapes: layer0/alpha {a0.shape}, layer1/alpha {a1.shape}, layer2/alpha {a2.shape}")
    return int(h0), int(h1)


def unit_scores(
    element_scores: tuple[jax.Array, jax.Array, jax.Array], alive: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """Scores of the hidden units (in + out element scores over all experts; ``-inf`` if pruned).

    Args:
        element_scores: Per-weight scores of ``layer0/1/2`` ``alpha``, each ``(K, in, out)``.
        alive: Bool unit masks ``(H0,)``, ``(H1,)`` (True = kept).

    Returns:
        Float32 scores ``(H0,)``, ``(H1,)``.
    """
    s0, s1, s2 = element_scores
    u0 = jnp.sum(s0, axis=(0, 1)) + jnp.sum(s1, axis=(0, 2))
    u1 = jnp.sum(s1, axis=(0, 1)) + jnp.sum(s2, axis=(0, 2))
    ninf = jnp.float32(-jnp.inf)
    return jnp.where(alive[0], u0, ninf), jnp.where(alive[1], u1, ninf)


def prune_units(
    scores: tuple[jax.Array, jax.Array],
    alive: tuple[jax.Array, jax.Array],
    sparsity: jax.Array,
    *,
    scope: Scope,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """New unit masks with exact counts that never empty a layer (never fewer than already pruned).

    Counts (see the module docstring): ``local`` prunes ``min(round(s * H_h), H_h - 1)`` units of
    each layer (ranked on raw scores); ``global`` prunes ``min(round(s * (H0 + H1)), H0 + H1 - 2)``
    units in all, ranked on :func:`normalise_layer` scores, with each layer's best unit protected.

    Args:
        scores: Unit scores from :func:`unit_scores`.
        alive: Current unit masks.
        sparsity: Fraction of units to prune (traced float32).
        scope: ``"global"`` (one count over both layers) or ``"local"`` (per layer).
        axis_name: Enclosing ``jax.vmap`` axis name (see :func:`mann_jax.pruning.scoring.lowest_k`).

    Returns:
        Bool unit masks ``(H0,)``, ``(H1,)``.
    """
    h0 = scores[0].shape[0]
    if scope == "global":
        normed = [normalise_layer(s, a) for s, a in zip(scores, alive)]
        protected = jnp.concatenate([best_unit(s, a) for s, a in zip(normed, alive)])
        both = jnp.concatenate(normed)
        n = both.shape[0]
        k = jnp.minimum(count_for_sparsity(sparsity, n), n - jnp.sum(protected, dtype=jnp.int32))
        pruned = lowest_k(jnp.where(protected, jnp.inf, both), k, axis_name=axis_name) & ~protected
        p0, p1 = pruned[:h0], pruned[h0:]
    else:
        p0, p1 = (lowest_k(s, jnp.minimum(count_for_sparsity(sparsity, s.shape[0]), s.shape[0] - 1),
                           axis_name=axis_name) for s in scores)
    return alive[0] & ~p0, alive[1] & ~p1


def normalise_layer(scores: jax.Array, alive: jax.Array) -> jax.Array:
    """Unit scores of one layer divided by the mean absolute score of its alive units.

    Pruned units (``-inf``) stay ``-inf``; a layer whose alive units' mean is 0 (or not finite,
    or that has no alive unit) is returned unscaled. See the module docstring for why (global
    neuron ranking; layer-wise normalisation as in Molchanov et al. 2017).
    """
    n_alive = jnp.sum(alive, dtype=jnp.int32)
    total = jnp.sum(jnp.where(alive, jnp.abs(scores), jnp.float32(0)), dtype=jnp.float32)
    mean = total / jnp.maximum(n_alive, 1).astype(jnp.float32)
    usable = (mean > 0) & jnp.isfinite(mean)
    return jnp.where(usable, scores / jnp.where(usable, mean, jnp.float32(1)), scores)


def best_unit(scores: jax.Array, alive: jax.Array) -> jax.Array:
    """One-hot bool mask of the unit a lowest-first ranking would prune last (all False if none alive).

    The highest score among the alive units, the higher index on ties (``lowest_k`` prunes the
    lower index first among equal scores).
    """
    s = jnp.where(alive, scores, -jnp.inf)
    top = alive & (s == jnp.max(s))
    index = jnp.arange(scores.shape[0])
    return index == jnp.max(jnp.where(top, index, -1))  # -1: no alive unit, nothing protected


def leaf_masks_from_units(params: Params, u0: jax.Array, u1: jax.Array) -> dict[tuple[str, str], jax.Array]:
    """Full-shape bool masks of :data:`NEURON_LEAVES` from unit masks ``u0 (H0,)``, ``u1 (H1,)``."""
    shape = lambda layer, name: params[layer][name].shape  # noqa: E731
    return {
        ("layer0", "alpha"): jnp.broadcast_to(u0[None, None, :], shape("layer0", "alpha")),
        ("layer0", "beta"): jnp.broadcast_to(u0[None, :], shape("layer0", "beta")),
        ("layer1", "alpha"): jnp.broadcast_to(u0[None, :, None] & u1[None, None, :], shape("layer1", "alpha")),
        ("layer1", "beta"): jnp.broadcast_to(u1[None, :], shape("layer1", "beta")),
        ("layer2", "alpha"): jnp.broadcast_to(u1[None, :, None], shape("layer2", "alpha")),
    }


def units_from_masks(masks: Params) -> tuple[Any, Any]:
    """Unit masks ``(u0, u1)`` (True = kept) read from neuron-granularity masks (the ``beta`` masks).

    Raises:
        ValueError: the masks are not neuron masks (``layer0/beta`` and ``layer1/beta`` not full-shape).
    """
    try:
        b0, b1 = masks["layer0"]["beta"], masks["layer1"]["beta"]
    except (KeyError, TypeError):
        raise ValueError("expected a masks tree with layer0/beta and layer1/beta") from None
    if np.ndim(b0) != 2 or np.ndim(b1) != 2:
        raise ValueError("these masks are not neuron-granularity masks (the beta masks are not full-shape)")
    return b0[0], b1[0]


def hidden_sizes_after(masks: Params) -> tuple[int, int]:
    """Hidden sizes left after removing the pruned units of neuron masks."""
    u0, u1 = units_from_masks(masks)
    return int(np.sum(np.asarray(u0))), int(np.sum(np.asarray(u1)))


def shrink(params: Params, masks: Params) -> Params:
    """Physically removes pruned hidden units: a parameter tree of a MANN with smaller hidden sizes.

    Host-side (the output shapes depend on the masks). Gating parameters and ``layer2/beta`` are
    copied unchanged; the expert matrices lose the pruned columns/rows in every expert. Load the
    result into ``MANN(hidden_sizes=hidden_sizes_after(masks), ...)``.

    Args:
        params: Full-size MANN parameters (plain nested dict).
        masks: Neuron-granularity masks (``PruningState.masks``).

    Returns:
        A new nested dict of ``jnp`` arrays.
    """
    check_mann_params(params)
    u0, u1 = (np.asarray(u, bool) for u in units_from_masks(masks))
    k0, k1 = np.flatnonzero(u0), np.flatnonzero(u1)
    out = jax.tree.map(jnp.asarray, params)
    a0, a1, a2 = (np.asarray(params[f"layer{i}"]["alpha"]) for i in range(3))
    b0, b1 = np.asarray(params["layer0"]["beta"]), np.asarray(params["layer1"]["beta"])
    out["layer0"] = dict(out["layer0"], alpha=jnp.asarray(a0[:, :, k0]), beta=jnp.asarray(b0[:, k0]))
    out["layer1"] = dict(out["layer1"], alpha=jnp.asarray(a1[:, k0][:, :, k1]), beta=jnp.asarray(b1[:, k1]))
    out["layer2"] = dict(out["layer2"], alpha=jnp.asarray(a2[:, k1, :]))
    return out


def check_n_m(shape: tuple[int, ...], n: int, m: int, where: str) -> None:
    """Raises ValueError unless an n:m pattern fits a leaf of ``shape`` (input dim = axis -2)."""
    if len(shape) < 2:
        raise ValueError(f"n:m pruning needs matrices; {where} has shape {shape}")
    if shape[-2] % m:
        raise ValueError(f"n:m pruning: the input dimension of {where} ({shape[-2]}) is not a multiple of m={m}")


def n_m_mask(scores: jax.Array, old: jax.Array, n: int, m: int) -> jax.Array:
    """Keeps the ``n`` highest scores in every group of ``m`` consecutive inputs (axis -2).

    Args:
        scores: Element scores ``(..., in, out)`` (``in`` a multiple of ``m``).
        old: Current bool mask (pruned entries score ``-inf`` and stay pruned).
        n: Weights kept per group.
        m: Group size.

    Returns:
        The new bool mask (True = kept): exactly ``m - n`` zeros per group.
    """
    *lead, rows, cols = scores.shape
    s = jnp.where(old, scores, -jnp.inf).reshape(*lead, rows // m, m, cols)
    # Ascending rank within the group, ties by position: rank_i = #{j: s_j < s_i} + #{j < i: s_j = s_i}.
    a, b = s[..., :, None, :], s[..., None, :, :]  # a: s_i, b: s_j -> (..., m_i, m_j, cols)
    earlier = (jnp.arange(m)[None, :] < jnp.arange(m)[:, None])[:, :, None]  # j < i
    rank = jnp.sum((b < a) | ((b == a) & earlier), axis=-2)
    keep = (rank >= m - n).reshape(scores.shape)
    return old & keep
