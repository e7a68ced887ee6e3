"""Magnitude pruning as an optax wrapper: masks in the optimizer state, exact counts, no revival.

Design (learnt from jaxpruner, which is not a dependency):

* :func:`prune` wraps ANY ``optax.GradientTransformation`` (here AdamWR from
  :mod:`mann_jax.optim`). Its state is a :class:`PruningState` ``(count, target_sparsity, masks,
  inner_state)``; everything is plain arrays, so Orbax checkpoints it with the rest of the train
  state and ``jax.vmap`` maps it over a leading "level" axis.
* **Mask layout.** ``masks`` has the structure of the parameters. A prunable leaf has a bool mask
  of its full shape (True = kept); every other leaf has the bool scalar ``True`` (shape ``()``),
  which broadcasts. Bool arrays only: no ``None`` leaves, so the tree flattens the same way as
  the parameters and checkpoints as it is.
* **target_sparsity lives in the state** (float32 scalar), so one compiled step serves every
  level; set it after ``init`` with :func:`with_target_sparsity`. The sparsity at step ``count``
  is ``schedule(count) * target_sparsity``, where the :class:`~mann_jax.pruning.schedules.Schedule`
  returns the fraction of the target reached, in [0, 1].
* **Mask updates** happen on the schedule's update steps (inside the window, every
  ``update_every``-th step counted from the window start, and the window's last step). The masks
  are recomputed from the CURRENT parameters (before this step's update) with the scoring
  function; weights already pruned score ``-inf`` and the new mask is and-ed with the old one, so
  a weight once pruned is never revived (with a decreasing schedule the count would simply stay).
  The update sits in a ``lax.cond``; under ``jax.vmap`` a batched predicate turns a cond into a
  select that would recompute masks on EVERY step, so for a vmapped sweep pass the vmap's
  ``axis_name`` here and to ``jax.vmap``: the predicate is then or-ed over the levels and the
  cond stays a real branch.
* **Exact counts.** Unstructured ``scope="global"``: exactly ``round(s * N)`` zeros among the ``N``
  prunable weights of all prunable leaves together, ranked by raw score (``|w|``; no per-leaf
  normalisation). ``scope="local"``: ``round(s * N_leaf)`` per leaf. Ties: lower position first,
  positions counted in the flattening order of the parameter tree (sorted dict keys, so
  ``gating/...`` before ``layer0/alpha`` before ``layer1/alpha``), row-major inside a leaf.
  ``round`` is half to even, computed exactly (:func:`~mann_jax.pruning.scoring.count_for_sparsity`).
* **When.** The masks computed in update number ``count`` (0-based) apply to that update's
  result, so after ``step`` updates the parameters have sparsity ``schedule(step - 1) * target``
  (changing only on update steps); with ``end = 1`` the last step of training reaches the target.
* **Cost**: a global mask update costs several train steps (a selection over every prunable
  weight), so use ``update_every`` of tens to hundreds of steps for unstructured pruning; under
  ``jax.vmap`` pass ``axis_name``, or the update's ``lax.cond`` becomes a select that runs the
  update on every step. A step
  whose update branch is compiled in but not taken still costs more than an unpruned one (XLA's
  CPU runtime allocates the branch's temporaries on every run), so the training loops compile a
  second step with ``mask_updates=False`` (masks applied, never recomputed) and run it on every
  step that :meth:`Schedule.mask_update_due` says needs no update (:func:`mann_jax.loop.run_loop`).
  Figures: ``docs/benchmarks.md``; the measurements: ``docs/measurement_log.md``.
* **Every step**: masked gradients go into the inner optimizer, and the update of a pruned
  weight is replaced by ``-param``, so ``param + update == 0`` exactly after
  ``optax.apply_updates``; this also kills revival through Adam moments or decoupled weight decay.
* **Granularity**: a dispatch table, :data:`GRANULARITIES` (which leaves, which checks, which
  mask update): ``"unstructured"`` (here, :func:`unstructured_masks`), ``"neuron"`` and ``"n:m"``
  (see :mod:`mann_jax.pruning.structured`; global neuron pruning ranks layer-normalised unit
  scores and never empties a hidden layer).
* **Prunable leaves** (unstructured and n:m): by default the expert matrices ``layer0/alpha``,
  ``layer1/alpha``, ``layer2/alpha``; :data:`EXPERTS_AND_GATING` adds the gating kernels. A filter
  is a regex (full match on the ``/``-joined path) or ``(path, leaf) -> bool``; leaves named
  ``bias`` or ``beta``, and scalars, are never selected. Neuron granularity fixes its own leaves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from mann_jax.config_errors import ConfigError
from mann_jax.pruning import structured
from mann_jax.pruning.schedules import Schedule
from mann_jax.pruning.scoring import count_for_sparsity, get_score, lowest_k

Scope = Literal["global", "local"]
Granularity = str  # a key of GRANULARITIES: "unstructured", "neuron", "n:m"
PrunableFn = Callable[[str, Any], bool]

#: Regex of the default prunable leaves: the motion network's expert weight matrices.
EXPERTS: str = r"layer\d+/alpha"
#: Regex adding the gating network's kernels.
EXPERTS_AND_GATING: str = r"layer\d+/alpha|gating/layer\d+/kernel"

_NEVER = ("bias", "beta")


class PruningState(NamedTuple):
    """Optimizer state of :func:`prune`.

    Attributes:
        count: int32 number of updates applied so far.
        target_sparsity: float32 final sparsity (fraction of prunable weights, or of hidden units
            for ``"neuron"``).
        masks: Bool tree shaped like the parameters (full-shape masks on pruned leaves, scalar
            ``True`` elsewhere; True = kept).
        inner_state: State of the wrapped transformation.
    """

    # Ignored for mypy: the field shadows tuple.count, as optax's states' do; its name is in every checkpoint.
    count: jax.Array  # type: ignore[assignment]
    target_sparsity: jax.Array
    masks: Any
    inner_state: Any


def path_string(path: tuple[Any, ...]) -> str:
    """``"layer0/alpha"`` from a ``jax.tree_util`` key path."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def default_prunable(path: str, leaf: Any) -> bool:
    """The expert weight matrices of the motion network (``layer<i>/alpha``)."""
    del leaf
    return re.fullmatch(EXPERTS, path) is not None


def _as_filter(prunable: PrunableFn | str | None) -> PrunableFn:
    if prunable is None:
        return default_prunable
    if isinstance(prunable, str):
        pattern = re.compile(prunable)
        return lambda path, leaf: pattern.fullmatch(path) is not None
    if callable(prunable):
        return prunable
    raise ValueError(f"prunable must be a regex string or a callable (path, leaf) -> bool, got {prunable!r}")


def prunable_paths(params: Any, prunable: PrunableFn | str | None = None) -> list[str]:
    """Paths of the leaves ``prunable`` selects (never ``bias``/``beta`` leaves or scalars), in tree order."""
    select = _as_filter(prunable)
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        p = path_string(path)
        if p.rsplit("/", 1)[-1] in _NEVER or np.ndim(leaf) == 0:
            continue
        if select(p, leaf):
            out.append(p)
    return out


def _check_target(value: Any, granularity: str = "unstructured", n_m: tuple[int, int] = (2, 4)) -> None:
    try:
        v = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced: checked by the caller's caller
    if not 0.0 <= v < 1.0 or v != v:
        raise ValueError(f"target_sparsity must lie in [0, 1), got {v}")
    if granularity == "n:m":
        n, m = n_m
        if v != 0.0 and abs(v - (1.0 - n / m)) > 1e-6:
            raise ValueError(f"n:m pruning fixes the sparsity at 1 - n/m = {1 - n / m:g}; "
                             f"target_sparsity must be that or 0, got {v}")


def with_target_sparsity(state: PruningState, value: float | jax.Array) -> PruningState:
    """``state`` with ``target_sparsity`` replaced (float32; a concrete value must lie in [0, 1))."""
    _check_target(value)
    return state._replace(target_sparsity=jnp.asarray(value, jnp.float32))


def find_pruning_state(opt_state: Any) -> PruningState:
    """The (first) :class:`PruningState` inside an optimizer state, e.g. ``train_state.opt_state``.

    Raises:
        ValueError: there is none.
    """
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PruningState))
             if isinstance(s, PruningState)]
    if not found:
        raise ValueError("no PruningState in this optimizer state (is the optimizer wrapped with prune()?)")
    return found[0]


class MaskUpdate(NamedTuple):
    """What a granularity's mask update sees, inside the compiled step.

    Attributes:
        params: The parameter tree; ``paths``, ``mask_leaves``: its leaves' paths and current masks in
            tree order; ``masks``: the masks tree.
        chosen: Paths of the pruned leaves (:attr:`GranularityRule.leaves`).
        raw_scores: Leaf index -> the criterion's element scores.
        scores_of: ``(leaf index, fill=-inf)`` -> float32 scores with already-pruned entries set to ``fill``.
        sparsity: Fraction to prune now (traced); ``scope``, ``axis_name``, ``n_m``: :func:`prune`'s.
    """

    params: Any
    masks: Any
    paths: list[str]
    mask_leaves: list[jax.Array]
    chosen: set[str]
    raw_scores: Callable[[int], jax.Array]
    scores_of: Callable[..., jax.Array]
    sparsity: jax.Array
    scope: Scope
    axis_name: str | None
    n_m: tuple[int, int]


def _no_check(*_: Any) -> None:
    return None


class GranularityRule(NamedTuple):
    """How one granularity prunes: the entries of :data:`GRANULARITIES`.

    Attributes:
        leaves: ``(params, prunable filter) -> paths`` of the leaves it prunes.
        new_masks: :class:`MaskUpdate` -> ``{leaf index: new kept mask}`` (leaves not returned keep theirs).
        check_settings: ``(n_m, prunable)`` -> raises ConfigError on settings it cannot use.
        check_params: ``(params, chosen paths, n_m)`` -> raises ValueError on parameters it cannot prune.
    """

    leaves: Callable[[Any, PrunableFn], set[str]]
    new_masks: Callable[[MaskUpdate], dict[int, jax.Array]]
    check_settings: Callable[[tuple[int, int], Any], None] = _no_check
    check_params: Callable[[Any, set[str], tuple[int, int]], None] = _no_check


def _filtered_leaves(params: Any, select: PrunableFn) -> set[str]:
    return set(prunable_paths(params, select))


def _unstructured_update(u: MaskUpdate) -> dict[int, jax.Array]:
    idx = [i for i, p in enumerate(u.paths) if p in u.chosen]
    kept = unstructured_masks([u.raw_scores(i) for i in idx], [u.mask_leaves[i] for i in idx], u.sparsity,
                              scope=u.scope, axis_name=u.axis_name)
    return dict(zip(idx, kept))


def _neuron_leaves(params: Any, select: PrunableFn) -> set[str]:
    return {f"{layer}/{name}" for layer, name in structured.NEURON_LEAVES}


def _neuron_update(u: MaskUpdate) -> dict[int, jax.Array]:
    idx = {p: i for i, p in enumerate(u.paths)}
    # Pruned weights add 0 to a unit's score; pruned units themselves score -inf.
    elem0, elem1, elem2 = (u.scores_of(idx[f"layer{j}/alpha"], 0.0) for j in range(3))
    alive = structured.units_from_masks(u.masks)
    u0, u1 = structured.prune_units(structured.unit_scores((elem0, elem1, elem2), alive), alive, u.sparsity,
                                    scope=u.scope, axis_name=u.axis_name)
    leaf_masks = structured.leaf_masks_from_units(u.params, u0, u1)
    return {idx[f"{layer}/{name}"]: mk for (layer, name), mk in leaf_masks.items()}


def _neuron_settings(n_m: tuple[int, int], prunable: Any) -> None:
    if prunable is not None:
        raise ConfigError("neuron pruning removes hidden units of layer0/layer1; it takes no prunable filter")


def _neuron_params(params: Any, chosen: set[str], n_m: tuple[int, int]) -> None:
    structured.check_mann_params(params)


def _n_m_settings(n_m: tuple[int, int], prunable: Any) -> None:
    n, m = n_m
    if not 1 <= n < m:
        raise ConfigError(f"n:m needs 1 <= n < m, got {n_m}")


def _n_m_params(params: Any, chosen: set[str], n_m: tuple[int, int]) -> None:
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if path_string(path) in chosen:
            structured.check_n_m(np.shape(leaf), n_m[0], n_m[1], path_string(path))


def _n_m_update(u: MaskUpdate) -> dict[int, jax.Array]:
    n, m = u.n_m
    apply = u.sparsity > 0
    return {i: jnp.where(apply, structured.n_m_mask(u.scores_of(i), u.mask_leaves[i], n, m), u.mask_leaves[i])
            for i, p in enumerate(u.paths) if p in u.chosen}


#: The granularities :func:`prune` dispatches on (``pruning.granularity``); adding one = a rule here.
GRANULARITIES: dict[str, GranularityRule] = {
    "unstructured": GranularityRule(_filtered_leaves, _unstructured_update),
    "neuron": GranularityRule(_neuron_leaves, _neuron_update, check_settings=_neuron_settings,
                              check_params=_neuron_params),
    "n:m": GranularityRule(_filtered_leaves, _n_m_update, check_settings=_n_m_settings, check_params=_n_m_params),
}


def prune(
    inner: optax.GradientTransformation,
    *,
    target_sparsity: float | jax.Array,
    schedule: Schedule,
    scope: Scope = "global",
    criterion: str = "magnitude",
    granularity: Granularity = "unstructured",
    n_m: tuple[int, int] = (2, 4),
    prunable: PrunableFn | str | None = None,
    update_every: int = 1,
    seed: int = 0,
    axis_name: str | None = None,
    mask_updates: bool = True,
) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner`` so that training prunes the model to ``target_sparsity`` (see the module docstring).

    Args:
        inner: The optimizer to wrap.
        target_sparsity: Final sparsity in [0, 1) (initial value of ``PruningState.target_sparsity``).
        schedule: Step count -> fraction of the target (carries the window and ``total_steps``).
        scope: ``"global"`` (one ranking over all prunable weights) or ``"local"`` (per leaf / layer).
        criterion: Key of :data:`mann_jax.pruning.scoring.SCORES` (``"magnitude"``, ``"random"``).
        granularity: ``"unstructured"``, ``"neuron"`` (whole hidden units) or ``"n:m"``.
        n_m: ``(n, m)`` for ``"n:m"``: keep ``n`` of every ``m`` inputs.
        prunable: Leaves to prune (regex on the path, or callable); default the expert matrices.
            Not allowed with ``"neuron"``, which fixes its leaves.
        update_every: Steps between mask updates inside the window (>= 1).
        seed: Seed of the ``"random"`` criterion.
        axis_name: The ``jax.vmap`` axis name when the step runs vmapped over levels (see above).
        mask_updates: False builds the same transformation (same state, same masking) without the
            mask update: for the steps :meth:`Schedule.mask_update_due` says need none, so that
            their compiled step does not carry the update (see "Cost" in the module docstring).

    Returns:
        An optax transformation whose state is a :class:`PruningState`; its ``update`` needs ``params``.

    Raises:
        ValueError: bad settings (checked here; the filter is checked by ``init``).
    """
    if scope not in ("global", "local"):
        raise ConfigError(f"scope must be 'global' or 'local', got {scope!r}")
    if granularity not in GRANULARITIES:
        raise ConfigError(f"granularity must be one of {', '.join(map(repr, GRANULARITIES))}, got {granularity!r}")
    if int(update_every) != update_every or update_every < 1:
        raise ConfigError(f"update_every must be an integer >= 1, got {update_every}")
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a mann_jax.pruning.Schedule (see make_schedule), got {schedule!r}")
    rule = GRANULARITIES[granularity]
    n_m = (int(n_m[0]), int(n_m[1]))
    rule.check_settings(n_m, prunable)
    _check_target(target_sparsity, granularity, n_m)
    score_fn = get_score(criterion)
    select = _as_filter(prunable)
    inner = optax.with_extra_args_support(inner)
    update_every = int(update_every)

    def leaf_paths(params: Any) -> tuple[list[str], Any]:
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        return [path_string(p) for p, _ in flat], treedef

    def init_fn(params: Any) -> PruningState:
        chosen = rule.leaves(params, select)
        rule.check_params(params, chosen, n_m)
        if not chosen:
            raise ValueError("the prunable filter selects no parameter (biases and scalars are never pruned); "
                             f"paths: {leaf_paths(params)[0]}")
        masks = jax.tree_util.tree_map_with_path(
            lambda path, leaf: jnp.ones(np.shape(leaf) if path_string(path) in chosen else (), bool), params)
        return PruningState(
            count=jnp.zeros([], jnp.int32),
            target_sparsity=jnp.asarray(target_sparsity, jnp.float32),
            masks=masks,
            inner_state=inner.init(params),
        )

    def new_masks(params: Any, grads: Any, masks: Any, sparsity: jax.Array, count: jax.Array) -> Any:
        paths, treedef = leaf_paths(params)
        p_leaves = treedef.flatten_up_to(params)
        g_leaves = treedef.flatten_up_to(grads)
        m_leaves = treedef.flatten_up_to(masks)
        key = jax.random.fold_in(jax.random.key(seed), count)

        def raw_scores(i: int) -> jax.Array:
            return score_fn(p_leaves[i], g_leaves[i], jax.random.fold_in(key, i))

        def scores_of(i: int, fill: float = -jnp.inf) -> jax.Array:
            return jnp.where(m_leaves[i], raw_scores(i).astype(jnp.float32), jnp.float32(fill))

        ctx = MaskUpdate(params=params, masks=masks, paths=paths, mask_leaves=m_leaves,
                         chosen=rule.leaves(params, select), raw_scores=raw_scores, scores_of=scores_of,
                         sparsity=sparsity, scope=scope, axis_name=axis_name, n_m=n_m)
        out = list(m_leaves)
        for i, mk in rule.new_masks(ctx).items():
            out[i] = mk
        return treedef.unflatten(out)

    def update_fn(
        updates: optax.Updates, state: PruningState, params: optax.Params | None = None, **extra_args: Any
    ) -> tuple[optax.Updates, PruningState]:
        if params is None:
            raise ValueError("prune() needs the current params in update(grads, state, params)")
        count = state.count
        sparsity = jnp.clip(schedule(count) * state.target_sparsity, 0.0, 1.0)
        # A level with target 0 never prunes: skip its (expensive) recompute.
        due = schedule.is_update_step(count, update_every) & (state.target_sparsity > 0)
        due_any = due if axis_name is None else lax.pmax(due.astype(jnp.int32), axis_name) > 0

        def recompute() -> Any:
            fresh = new_masks(params, updates, state.masks, sparsity, count)
            return jax.tree.map(lambda new, old: jnp.where(due, new, old), fresh, state.masks)

        masks = lax.cond(due_any, recompute, lambda: state.masks) if mask_updates else state.masks
        masked = jax.tree.map(lambda g, mk: g if mk.ndim == 0 else jnp.where(mk, g, jnp.zeros_like(g)),
                              updates, masks)
        inner_updates, inner_state = inner.update(masked, state.inner_state, params, **extra_args)
        out = jax.tree.map(lambda u, p, mk: u if mk.ndim == 0 else jnp.where(mk, u, -p).astype(u.dtype),
                           inner_updates, params, masks)
        return out, PruningState(count=optax.safe_increment(count), target_sparsity=state.target_sparsity,
                                 masks=masks, inner_state=inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def unstructured_masks(
    scores: list[jax.Array],
    masks: list[jax.Array],
    sparsity: float | jax.Array,
    *,
    scope: Scope = "global",
    axis_name: str | None = None,
) -> list[jax.Array]:
    """The unstructured mask update of :func:`prune`: new kept masks of the prunable leaves.

    This is the function every unstructured mask update of training runs (and
    :func:`magnitude_masks`, hence :func:`mann_jax.pruning.accounting.global_magnitude_masks`):
    exact counts and ties as in the module docstring. Already-pruned entries (``masks`` False)
    score ``-inf`` and the result is and-ed with ``masks``, so nothing is revived.

    Args:
        scores: Element scores of the prunable leaves in tree order (cast to float32).
        masks: Their current bool masks (True = kept), each of its leaf's shape or scalar ``True``.
        sparsity: Fraction of the prunable weights to prune, in [0, 1] (may be traced).
        scope: ``"global"`` (one ranking, ``round(s * N)`` over all leaves) or ``"local"`` (per leaf).
        axis_name: Enclosing ``jax.vmap`` axis name (see :func:`~mann_jax.pruning.scoring.lowest_k`).

    Returns:
        One full-shape bool mask per leaf (True = kept).
    """
    if scope not in ("global", "local"):
        raise ValueError(f"scope must be 'global' or 'local', got {scope!r}")
    shapes = [np.shape(s) for s in scores]
    flat = [jnp.where(m, jnp.asarray(s, jnp.float32), -jnp.inf).ravel() for s, m in zip(scores, masks)]
    if scope == "global":
        both = jnp.concatenate(flat)
        pruned_all = lowest_k(both, count_for_sparsity(sparsity, both.shape[0]), axis_name=axis_name)
        bounds = np.cumsum([0] + [f.shape[0] for f in flat])
        pruned = [pruned_all[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        pruned = [lowest_k(f, count_for_sparsity(sparsity, f.shape[0]), axis_name=axis_name) for f in flat]
    return [m & ~p.reshape(shape) for m, p, shape in zip(masks, pruned, shapes)]


def magnitude_masks(
    params: Any, sparsity: float | jax.Array, *, scope: Scope = "global", prunable: PrunableFn | str | None = None
) -> Any:
    """One-shot magnitude masks: what one mask update of :func:`prune` gives from dense masks.

    Scores ``|w|`` (``SCORES["magnitude"]``) and selects with :func:`unstructured_masks`, the
    function training runs, so these masks are exactly those of a ``prune(..., criterion=
    "magnitude", granularity="unstructured")`` update at ``sparsity``. Unlike :func:`prune`'s
    target, ``sparsity`` may be 1 (everything pruned). Jit-able (``sparsity`` may be traced).

    Args:
        params: Parameter tree.
        sparsity: Fraction of the prunable weights to prune, in [0, 1].
        scope: ``"global"`` or ``"local"``.
        prunable: Leaves to prune (regex or callable, as in :func:`prune`); default the expert matrices.

    Returns:
        The masks in :class:`PruningState` layout: full-shape bool masks on the prunable leaves,
        scalar ``True`` elsewhere.

    Raises:
        ValueError: the filter selects no parameter, or a concrete ``sparsity`` outside [0, 1].
    """
    try:
        value = float(sparsity)
    except (TypeError, jax.errors.ConcretizationTypeError):
        value = None
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"sparsity must lie in [0, 1], got {value}")
    chosen = set(prunable_paths(params, prunable))
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [path_string(p) for p, _ in flat]
    if not chosen:
        raise ValueError(f"the prunable filter selects no parameter; paths: {paths}")
    score_fn = get_score("magnitude")
    idx = [i for i, p in enumerate(paths) if p in chosen]
    leaves = [jnp.asarray(leaf) for _, leaf in flat]
    scores = [score_fn(leaves[i], None, jax.random.key(0)) for i in idx]
    kept = unstructured_masks(scores, [jnp.ones((), bool)] * len(idx), sparsity, scope=scope)
    out = [jnp.ones((), bool)] * len(leaves)
    for i, mk in zip(idx, kept):
        out[i] = mk
    return jax.tree_util.tree_unflatten(treedef, out)


def pruned_entries(masks: Any) -> tuple[jax.Array, jax.Array]:
    """``(pruned, entries)`` over the full-shape masks of ONE model, as int32 scalars: the overall
    count of :func:`sparsity_report` for a masks tree, but traceable, so it runs where the masks live
    (a scalar ``True`` leaf stands for a leaf that is not pruned and is not counted)."""
    shaped = [m for m in jax.tree.leaves(masks) if m.ndim]
    pruned = sum((m.size - jnp.sum(m, dtype=jnp.int32) for m in shaped), jnp.int32(0))
    return pruned, jnp.int32(sum(m.size for m in shaped))


def sparsity_report(tree: Any, prunable: PrunableFn | str | None = None) -> dict[str, float]:
    """Fraction of zeros among prunable weights, overall and per leaf (host-side, for logging).

    Args:
        tree: Parameters (zeros are counted on the leaves ``prunable`` selects), or a masks tree
            (bool leaves; every full-shape mask counts, False = pruned).
        prunable: Filter for parameters (default: the expert matrices); ignored for masks.

    Returns:
        ``{"overall": f, "<path>": f, ...}`` as Python floats (``"overall"`` over all counted weights).
    """
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    is_masks = bool(flat) and all(np.asarray(leaf).dtype == np.bool_ for _, leaf in flat)
    chosen = set() if is_masks else set(prunable_paths(tree, prunable))  # masks: every full-shape leaf counts
    report: dict[str, float] = {}
    zeros = total = 0
    for path, leaf in flat:
        p = path_string(path)
        a = np.asarray(leaf)
        if is_masks:
            if a.ndim == 0:
                continue
            z = int(a.size - np.count_nonzero(a))
        else:
            if p not in chosen:
                continue
            z = int(a.size - np.count_nonzero(a))
        report[p] = z / a.size if a.size else 0.0
        zeros += z
        total += a.size
    report["overall"] = zeros / total if total else 0.0
    return report
