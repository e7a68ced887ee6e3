"""Non-zero parameters, model size and FLOPs per frame of a (pruned) MANN, and the study's Table 1.

Plain numpy over a params tree (``ModelFunctions.of(model).params``) with an optional masks tree of
the same structure (a missing or ``None`` mask leaf keeps all). A value counts as pruned when its
mask is 0 **or** the value itself is 0, so a freshly built MANN counts no biases.

* ``size_mb``: 32 bits x non-zero stored values / 1e6 (the study's unit, no index overhead);
  :func:`csr_size_mb` adds CSR indices (int32 columns and row pointers), the honest second figure.
* FLOPs per frame (batch 1, inference): one FLOP per multiply-accumulate, one per element-wise
  operation; an operation reading a parameter tensor costs its dense count times the tensor's
  density; a tensor computed per frame (the blended ``W``) is dense. ``"blend"`` is the original's
  formulation (blend the experts' weights, then one matrix-vector product), ``"mix"`` mixes the
  experts' outputs.

This convention reproduces every row of the study's Table 1 within 0.2 % (``python -m
experiments.model_size``); the per-term table, the derivation and the conventions that miss it are
in ``docs/pruning.md``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

Params = Mapping[str, Any]
Flat = dict[str, np.ndarray]
Formulation = Literal["blend", "mix"]
BlendedMatvec = Literal["dense", "support"]

#: Bits per stored value (float32) and per index (int32).
VALUE_BITS: int = 32
INDEX_BITS: int = 32

#: The study's Table 1: sparsity -> (model size in Mb, MFLOPs per frame).
STUDY_TABLE1: dict[float, tuple[float, float]] = {
    0.0: (178.0, 11.10),
    0.1: (160.0, 10.06),
    0.2: (142.0, 9.02),
    0.3: (124.0, 7.98),
    0.4: (106.0, 6.94),
    0.5: (88.0, 5.89),
    0.6: (71.0, 4.86),
    0.7: (53.0, 3.82),
    0.8: (35.0, 2.78),
    0.9: (17.8, 1.74),
}
STUDY_SPARSITIES: tuple[float, ...] = tuple(STUDY_TABLE1)

#: Seed of the original MANN code (and of the study's dense model).
DEFAULT_SEED: int = 23456

_LAYER = re.compile(r"^layer(\d+)$")


# --------------------------------------------------------------------------------------------
# Trees
# --------------------------------------------------------------------------------------------


def _flatten(tree: Params | None, prefix: str = "") -> dict[str, Any]:
    """``{'a/b/c': leaf}`` for a nested mapping (``None`` leaves kept as ``None``)."""
    out: dict[str, Any] = {}
    if tree is None:
        return out
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, path + "/"))
        else:
            out[path] = value
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_flatten`."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _effective(params: Params, masks: Params | None) -> Flat:
    """Flat numpy params with the mask applied (mask 0 -> value 0)."""
    flat_p = {k: np.asarray(v) for k, v in _flatten(params).items()}
    flat_m = _flatten(masks)
    unknown = set(flat_m) - set(flat_p)
    if unknown:
        raise ValueError(f"masks name leaves the params do not have: {sorted(unknown)}")
    for path, m in flat_m.items():
        if m is None:
            continue
        m = np.asarray(m)
        if m.shape != flat_p[path].shape:
            raise ValueError(f"mask {path}: shape {m.shape} != param shape {flat_p[path].shape}")
        flat_p[path] = np.where(m != 0, flat_p[path], np.zeros((), flat_p[path].dtype))
    return flat_p


def apply_masks(params: Params, masks: Params | None = None) -> dict[str, Any]:
    """The params tree (numpy) with every masked entry set to zero."""
    return _unflatten(_effective(params, masks))


def leaf_kind(path: str) -> Literal["expert_weights", "expert_biases", "gating", "other"]:
    """Which group a leaf belongs to: ``gating/...``, ``layerN/alpha``, ``layerN/beta`` or other."""
    parts = path.split("/")
    if parts[0] == "gating":
        return "gating"
    if parts[-1] == "alpha":
        return "expert_weights"
    if parts[-1] == "beta":
        return "expert_biases"
    return "other"


def _layers(flat: Flat, prefix: str, names: tuple[str, str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(weight, bias), ...]`` of ``{prefix}layerN/{names}`` in layer order."""
    found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for path in flat:
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        if len(rest) == 2 and (layer := _LAYER.match(rest[0])) and rest[1] == names[0]:
            found[int(layer.group(1))] = (
                flat[path], flat[f"{prefix}{rest[0]}/{names[1]}"])
    if not found:
        raise ValueError(f"no '{prefix}layerN/{names[0]}' leaves in the params tree")
    return [found[i] for i in sorted(found)]


# --------------------------------------------------------------------------------------------
# Non-zero counts and sizes
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NonZeroCounts:
    """Non-zero parameters after masking, per group and per leaf (``'layer0/alpha'`` ...).

    Attributes:
        total: All non-zero values.
        expert_weights: Non-zero ``alpha`` entries (the prunable matrices).
        expert_biases: Non-zero ``beta`` entries.
        gating: Non-zero gating kernel and bias entries.
        per_leaf: Non-zero entries of each leaf.
        sizes: Number of entries of each leaf (dense).
    """

    total: int
    expert_weights: int
    expert_biases: int
    gating: int
    per_leaf: dict[str, int]
    sizes: dict[str, int]

    @property
    def dense_total(self) -> int:
        """Number of entries of the whole (dense) tree."""
        return sum(self.sizes.values())

    @property
    def sparsity(self) -> float:
        """Fraction of all entries that are zero."""
        return 1.0 - self.total / self.dense_total

    @property
    def expert_weight_sparsity(self) -> float:
        """Fraction of the expert weights that are zero."""
        dense = sum(n for p, n in self.sizes.items() if leaf_kind(p) == "expert_weights")
        return 1.0 - self.expert_weights / dense


def nonzero_counts(params: Params, masks: Params | None = None) -> NonZeroCounts:
    """Counts the non-zero parameters of ``params`` after ``masks``."""
    flat = _effective(params, masks)
    per_leaf = {p: int(np.count_nonzero(a)) for p, a in flat.items()}
    groups = {"expert_weights": 0, "expert_biases": 0, "gating": 0, "other": 0}
    for p, n in per_leaf.items():
        groups[leaf_kind(p)] += n
    return NonZeroCounts(
        total=sum(per_leaf.values()),
        expert_weights=groups["expert_weights"],
        expert_biases=groups["expert_biases"],
        gating=groups["gating"],
        per_leaf=per_leaf,
        sizes={p: int(a.size) for p, a in flat.items()},
    )


def model_size_mb(
    params: Params,
    masks: Params | None = None,
    *,
    include: Literal["all", "expert_weights"] = "all",
    value_bits: int = VALUE_BITS,
) -> float:
    """Size in megabits (1e6 bits) of the non-zero values alone, no index overhead (the study's unit).

    Args:
        params: Params tree.
        masks: Optional masks tree.
        include: ``"all"`` non-zero values, or only the non-zero expert weights.
        value_bits: Bits per stored value (32: float32).
    """
    counts = nonzero_counts(params, masks)
    n = counts.total if include == "all" else counts.expert_weights
    return n * value_bits / 1e6


def csr_size_mb(
    params: Params,
    masks: Params | None = None,
    *,
    value_bits: int = VALUE_BITS,
    index_bits: int = INDEX_BITS,
) -> float:
    """Size in megabits with every matrix stored in CSR (values, column indices, row pointers).

    A ``(K, in, out)`` leaf is K matrices ``(in, out)``, a 2-D leaf one matrix and a 1-D leaf one
    row; each costs ``value_bits·nnz + index_bits·nnz + index_bits·(rows + 1)``.
    """
    bits = 0
    for a in _effective(params, masks).values():
        rows = a.shape[-2] if a.ndim >= 2 else 1
        n_matrices = int(np.prod(a.shape[:-2])) if a.ndim >= 2 else 1
        bits += (value_bits + index_bits) * int(np.count_nonzero(a))
        bits += index_bits * n_matrices * (rows + 1)
    return bits / 1e6


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """FLOPs of one frame (batch 1, inference), by term; see the module docstring.

    Attributes:
        formulation: ``"blend"`` or ``"mix"``.
        gating: Gating network (MACs, bias adds, ELU, softmax).
        expert_weights: Blend: building ``W = Σ ωk αk``; mix: the K expert matrix-vector products.
        matvec: Blend: ``x·W``; mix: 0 (counted in ``expert_weights``).
        expert_biases: Blending and adding the biases (blend), or adding each expert's (mix).
        mixing: Mix: ``Σ ωk yk``; blend: 0.
        activations: ELU after the hidden expert layers.
    """

    formulation: Formulation
    gating: float
    expert_weights: float
    matvec: float
    expert_biases: float
    mixing: float
    activations: float

    @property
    def total(self) -> float:
        """All FLOPs of the frame."""
        return (self.gating + self.expert_weights + self.matvec + self.expert_biases
                + self.mixing + self.activations)

    @property
    def mflops(self) -> float:
        """``total`` in millions."""
        return self.total / 1e6


def flops_per_frame(
    params: Params,
    masks: Params | None = None,
    *,
    formulation: Formulation = "blend",
    blended_matvec: BlendedMatvec = "dense",
    flops_per_mac: int = 1,
) -> FlopCount:
    """FLOPs of one inference frame under the convention of the module docstring.

    Args:
        params: Params tree (``gating/layerN/{kernel,bias}``, ``layerN/{alpha,beta}``).
        masks: Optional masks tree; zero values count as pruned as well.
        formulation: ``"blend"`` (blend the weights, the original and the study's count) or
            ``"mix"`` (mix the expert outputs).
        blended_matvec: Blend only: ``"dense"`` counts ``x·W`` over all of ``W`` (the study's
            count); ``"support"`` only over entries non-zero in at least one expert.
        flops_per_mac: FLOPs per multiply-accumulate of a matrix product (1, or 2).
    """
    if formulation not in ("blend", "mix"):
        raise ValueError(f"formulation must be 'blend' or 'mix', got {formulation!r}")
    if blended_matvec not in ("dense", "support"):
        raise ValueError(f"blended_matvec must be 'dense' or 'support', got {blended_matvec!r}")
    flat = _effective(params, masks)

    gating = 0.0
    gating_layers = _layers(flat, "gating/", ("kernel", "bias"))
    for i, (kernel, bias) in enumerate(gating_layers):
        gating += flops_per_mac * np.count_nonzero(kernel) + np.count_nonzero(bias)
        if i < len(gating_layers) - 1:
            gating += kernel.shape[-1]  # ELU
    n_experts = gating_layers[-1][0].shape[-1]
    gating += 3 * n_experts - 1  # softmax: K exp, K - 1 adds, K divisions

    expert_w = matvec = expert_b = mixing = activations = 0.0
    expert_layers = _layers(flat, "", ("alpha", "beta"))
    for i, (alpha, beta) in enumerate(expert_layers):
        k, n_in, n_out = alpha.shape
        nnz_alpha = float(np.count_nonzero(alpha))
        nnz_beta = float(np.count_nonzero(beta))
        if formulation == "blend":
            expert_w += (2 * k - 1) / k * nnz_alpha  # (2K-1)·P·d(alpha)
            support = n_in * n_out if blended_matvec == "dense" else np.count_nonzero(alpha.any(0))
            matvec += flops_per_mac * float(support)
            expert_b += 2.0 * nnz_beta  # 2K·out·d(beta): blend and add
        else:
            expert_w += flops_per_mac * nnz_alpha
            expert_b += nnz_beta
            mixing += (2 * k - 1) * n_out
        if i < len(expert_layers) - 1:
            activations += n_out
    return FlopCount(
        formulation=formulation,
        gating=float(gating),
        expert_weights=expert_w,
        matvec=matvec,
        expert_biases=expert_b,
        mixing=mixing,
        activations=activations,
    )


# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------


def default_params(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Params (numpy) of the dense default MANN (480-512-512-363, 8 experts) drawn from ``seed``."""
    from flax import nnx

    from mann_jax.model import MANN

    model = MANN(rngs=nnx.Rngs(seed))
    state = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return _unflatten({k: np.asarray(v) for k, v in _flatten(state).items()})


def global_magnitude_masks(params: Params, sparsities: Sequence[float]) -> list[dict[str, Any]]:
    """One GLOBAL magnitude mask tree per sparsity over the expert weights (``alpha`` leaves).

    The masks training makes: :func:`mann_jax.pruning.masks.magnitude_masks` (the selection of a
    ``prune(..., scope="global")`` mask update, not a re-implementation): ``|w|`` (float32) ranked
    over all expert weight matrices together, exactly ``round(s·N)`` zeros (``s`` as float32,
    half to even: :func:`~mann_jax.pruning.scoring.pruned_count`), ties to the lower flat index
    in the parameter tree's sorted-key order. Returned as plain numpy trees (in ``params``' key
    order) with full-shape bool masks on every leaf, all True off the expert weights.
    """
    import jax
    import jax.numpy as jnp

    from mann_jax.pruning.masks import magnitude_masks

    flat = {k: np.asarray(v) for k, v in _flatten(params).items()}
    levels = [float(s) for s in sparsities]
    for s in levels:
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"sparsity must lie in [0, 1], got {s}")
    if not levels:
        return []
    prunable = lambda path, leaf: leaf_kind(path) == "expert_weights"  # noqa: E731
    tree = jax.tree.map(jnp.asarray, _unflatten(flat))
    one = jax.jit(lambda p, s: magnitude_masks(p, s, scope="global", prunable=prunable))
    out = []
    for s in levels:
        kept = _flatten(jax.tree.map(np.asarray, one(tree, jnp.float32(s))))
        out.append(_unflatten({p: np.broadcast_to(kept[p], a.shape).copy() for p, a in flat.items()}))
    return out


@dataclasses.dataclass(frozen=True)
class Table1Row:
    """One row of Table 1: our accounting of one sparsity level, beside the study's numbers."""

    sparsity: float
    nonzero: int
    nonzero_expert_weights: int
    size_mb: float
    csr_size_mb: float
    mflops: float
    mflops_mix: float
    mflops_blend_support: float
    study_size_mb: float | None
    study_mflops: float | None

    @property
    def size_rel_diff(self) -> float | None:
        """``(ours − study) / study`` of the size, or None without a study row."""
        return None if self.study_size_mb is None else self.size_mb / self.study_size_mb - 1.0

    @property
    def mflops_rel_diff(self) -> float | None:
        """``(ours − study) / study`` of the MFLOPs, or None without a study row."""
        return None if self.study_mflops is None else self.mflops / self.study_mflops - 1.0

    def as_dict(self) -> dict[str, Any]:
        """The row with its relative differences, JSON-ready."""
        return {**dataclasses.asdict(self), "size_rel_diff": self.size_rel_diff,
                "mflops_rel_diff": self.mflops_rel_diff}


def study_row(sparsity: float) -> tuple[float, float] | None:
    """The study's ``(size Mb, MFLOPs)`` at ``sparsity``, or None when it has no such row."""
    return STUDY_TABLE1.get(round(float(sparsity), 6))


def table1(
    sparsities: Sequence[float] = STUDY_SPARSITIES,
    *,
    params: Params | None = None,
    masks: Sequence[Params] | None = None,
) -> list[Table1Row]:
    """The study's Table 1 computed from a real model.

    Args:
        sparsities: Sparsity levels of the expert weights.
        params: Params tree; the dense default MANN (seed 23456) when omitted.
        masks: One masks tree per level; by default a global magnitude mask per level
            (:func:`global_magnitude_masks`). Masks made by :mod:`mann_jax.pruning` (or read from
            a trained model's optimizer state) go through this same argument.
    """
    params = default_params() if params is None else params
    if masks is None:
        masks = global_magnitude_masks(params, sparsities)
    if len(masks) != len(sparsities):
        raise ValueError(f"{len(sparsities)} sparsities but {len(masks)} mask trees")
    rows = []
    for s, m in zip(sparsities, masks):
        eff = apply_masks(params, m)
        counts = nonzero_counts(eff)
        study = study_row(s)
        rows.append(Table1Row(
            sparsity=float(s),
            nonzero=counts.total,
            nonzero_expert_weights=counts.expert_weights,
            size_mb=counts.total * VALUE_BITS / 1e6,
            csr_size_mb=csr_size_mb(eff),
            mflops=flops_per_frame(eff).mflops,
            mflops_mix=flops_per_frame(eff, formulation="mix").mflops,
            mflops_blend_support=flops_per_frame(eff, blended_matvec="support").mflops,
            study_size_mb=None if study is None else study[0],
            study_mflops=None if study is None else study[1],
        ))
    return rows
