"""The pruning wrapper: exact counts, brute-force ranking, monotone masks, exact zeros, vmap, errors, train step."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configs import default
from mann_jax import optim
from mann_jax.checkpoint import Checkpoints
from mann_jax.data import layout
from mann_jax.pruning import (
    EXPERTS_AND_GATING,
    SCHEDULES,
    PruningState,
    count_for_sparsity,
    find_pruning_state,
    lowest_k,
    make_schedule,
    prunable_paths,
    prune,
    pruned_count,
    pruned_entries,
    sparsity_report,
    with_target_sparsity,
)
from mann_jax.pruning.masks import magnitude_masks
from mann_jax.train import ModelFunctions, build_model, init_state, make_optimizer, make_train_step

FAST = settings(max_examples=12, deadline=None, derandomize=True)
ONE_SHOT = make_schedule("one_shot", start=0.0, end=0.0, total_steps=1)

# Tree shapes the property tests draw from (few, so that jit compiles each once).
SHAPES = (
    {"a": (2, 3), "b": (4,)},
    {"a": (3, 5, 2), "b": (7,), "c": (1, 4)},
    {"a": (64,), "b": (8, 8)},
)


def _tree(shapes: dict, seed: int, levels: int) -> dict:
    """Float32 leaves with few distinct magnitudes (many ties) and random signs."""
    rng = np.random.default_rng(seed)
    return {k: (rng.integers(0, levels, s) * rng.choice([-1.0, 1.0], s)).astype(np.float32)
            for k, s in shapes.items()}


@functools.cache
def _one_shot_masks_fn(names: tuple[str, ...], scope: str):
    """Jitted ``(params, target) -> masks`` after one one-shot update (compiled once per shape set)."""
    tx = prune(optax.identity(), target_sparsity=0.0, schedule=ONE_SHOT, scope=scope, prunable="|".join(names))

    @jax.jit
    def run(params, target):
        state = with_target_sparsity(tx.init(params), target)
        _, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
        return state.masks

    return run


def one_shot_masks(params: dict, target: float, scope: str = "global") -> dict:
    return jax.tree.map(np.asarray, _one_shot_masks_fn(tuple(sorted(params)), scope)(params, jnp.float32(target)))


def reference_pruned(scores: np.ndarray, k: int) -> np.ndarray:
    """Brute force: the k lowest scores, ties by position (lower index first)."""
    order = np.lexsort((np.arange(scores.size), scores))
    out = np.zeros(scores.size, bool)
    out[order[:k]] = True
    return out


# ---------------------------------------------------------------------------------------------
# Hand-made trees
# ---------------------------------------------------------------------------------------------


def test_hand_made_tree_global_and_local_at_half():
    params = {"a": np.array([[1, -5, 3], [0.5, 4, -2]], np.float32), "b": np.array([6, 0.05, 7, 8], np.float32)}
    # Global: the 5 smallest of 10 magnitudes: 0.05 (b1), 0.5, 1, 2, 3.
    g = one_shot_masks(params, 0.5, "global")
    np.testing.assert_array_equal(g["a"], [[False, True, False], [False, True, False]])
    np.testing.assert_array_equal(g["b"], [True, False, True, True])
    # Local: 3 of a (0.5, 1, 2) and 2 of b (0.05, 6).
    loc = one_shot_masks(params, 0.5, "local")
    np.testing.assert_array_equal(loc["a"], [[False, True, True], [False, True, False]])
    np.testing.assert_array_equal(loc["b"], [False, False, True, True])


def test_ties_prune_lower_flat_index_first_across_leaves():
    params = {"a": np.ones((2, 3), np.float32), "b": np.ones(4, np.float32)}
    m = one_shot_masks(params, 0.7)  # round(7.0) = 7: all 6 of "a" (first in tree order), then b[0]
    np.testing.assert_array_equal(m["a"], np.zeros((2, 3), bool))
    np.testing.assert_array_equal(m["b"], [False, True, True, True])


def test_lowest_k_small_cases():
    s = jnp.array([3.0, 1, 1, 2, 1, 0, 5])
    expected_order = [5, 1, 2, 4, 3, 0, 6]
    got = np.asarray(jax.jit(jax.vmap(lowest_k, in_axes=(None, 0)))(s, jnp.arange(8)))
    for k in range(8):
        want = np.zeros(7, bool)
        want[expected_order[:k]] = True
        np.testing.assert_array_equal(got[k], want)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
def test_lowest_k_every_radix_width_gives_the_stable_ranking(bits):
    # Scores spanning signs, -inf (already pruned), zeros of both signs and heavy ties; the mask
    # must be exactly the first k of a stable argsort (-0.0 ranking below +0.0, as the float's
    # bit pattern orders them), whatever the digit width of the select.
    rng = np.random.default_rng(4)  # k = 200 falls among the zeros for this draw
    s = np.concatenate([rng.normal(size=300).astype(np.float32), np.full(40, -np.inf, np.float32),
                        np.zeros(20, np.float32), -np.zeros(10, np.float32),
                        np.repeat(np.float32([0.5, -2.0, 3e-39, 1e30]), 15)])
    rng.shuffle(s)
    bits_of = s.view(np.uint32)
    order = np.argsort(np.where(bits_of >> 31 == 1, ~bits_of, bits_of | np.uint32(1 << 31)), kind="stable")
    ks = np.array([0, 1, 39, 40, 41, 55, 69, 70, 200, len(s) - 1, len(s)])
    fn = jax.jit(jax.vmap(functools.partial(lowest_k, bits=bits), in_axes=(None, 0)))
    got = np.asarray(fn(jnp.asarray(s), jnp.asarray(ks)))
    for k, row in zip(ks, got):
        want = np.zeros(len(s), bool)
        want[order[:k]] = True
        np.testing.assert_array_equal(row, want, err_msg=f"k={k}")


def test_lowest_k_rejects_an_unknown_radix_width():
    with pytest.raises(ValueError, match="radix bits"):
        lowest_k(jnp.ones(4), 2, bits=3)


# ---------------------------------------------------------------------------------------------
# Properties: exact counts and ranking
# ---------------------------------------------------------------------------------------------


_count_jit = jax.jit(jax.vmap(count_for_sparsity, in_axes=(0, None)))


@FAST
@given(st.lists(st.floats(0.0, 1.0, width=32), min_size=1, max_size=32),
       st.integers(0, 2**31 - 1))
def test_count_for_sparsity_is_exact_round(sparsities, n):
    padded = np.zeros(32, np.float32)  # one shape: one compilation
    padded[: len(sparsities)] = sparsities
    got = np.asarray(_count_jit(jnp.asarray(padded), jnp.uint32(n)))
    np.testing.assert_array_equal(got, [pruned_count(s, n) for s in padded])


def test_count_for_sparsity_knife_edges_at_model_size():
    n = 5_550_080  # the 8x512 model: float32(s * n) is a multiple of 0.5 here
    s = np.float32((np.arange(1_000_000, 1_000_050) + 0.3) / n)
    got = np.asarray(_count_jit(jnp.asarray(s), jnp.uint32(n)))
    np.testing.assert_array_equal(got, [pruned_count(v, n) for v in s])
    assert pruned_count(0.5, 3) == 2 and pruned_count(0.1, 5) == 1  # half to even; float32(0.1) > 0.1


@FAST
@given(st.sampled_from(SHAPES), st.integers(0, 2**32 - 1), st.floats(0.0, 0.999), st.sampled_from([3, 1000]))
def test_global_exact_count_and_brute_force_ranking(shapes, seed, target, levels):
    params = _tree(shapes, seed, levels)
    masks = one_shot_masks(params, target, "global")
    names = sorted(params)
    scores = np.concatenate([np.abs(params[k]).ravel() for k in names])
    want = reference_pruned(scores, pruned_count(target, scores.size))
    got = ~np.concatenate([masks[k].ravel() for k in names])
    np.testing.assert_array_equal(got, want)
    assert got.sum() == pruned_count(target, scores.size)


@FAST
@given(st.sampled_from(SHAPES), st.integers(0, 2**32 - 1), st.floats(0.0, 0.999), st.sampled_from(["global", "local"]))
def test_magnitude_masks_equal_a_prune_mask_update(shapes, seed, target, scope):
    # magnitude_masks (used by accounting.global_magnitude_masks) runs the same selection as training.
    params = _tree(shapes, seed, 3)
    names = "|".join(sorted(params))
    got = jax.tree.map(np.asarray, _magnitude_masks_fn(names, scope)(params, jnp.float32(target)))
    want = one_shot_masks(params, target, scope)
    for k in params:
        np.testing.assert_array_equal(np.broadcast_to(got[k], params[k].shape), want[k])


@functools.cache
def _magnitude_masks_fn(names: str, scope: str):
    return jax.jit(lambda p, s: magnitude_masks(p, s, scope=scope, prunable=names))


def test_magnitude_masks_reach_one_and_check_the_level():
    params = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3, np.float32)}
    m = magnitude_masks(params, 1.0, prunable="a")
    assert not np.asarray(m["a"]).any() and np.asarray(m["bias"]).shape == ()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        magnitude_masks(params, 1.5, prunable="a")
    with pytest.raises(ValueError, match="selects no parameter"):
        magnitude_masks(params, 0.5, prunable="zzz")


@FAST
@given(st.sampled_from(SHAPES), st.integers(0, 2**32 - 1), st.floats(0.0, 0.999))
def test_local_gives_each_leaf_its_own_exact_count(shapes, seed, target):
    params = _tree(shapes, seed, 4)
    masks = one_shot_masks(params, target, "local")
    for k, v in params.items():
        want = reference_pruned(np.abs(v).ravel(), pruned_count(target, v.size))
        np.testing.assert_array_equal(~masks[k].ravel(), want)


# ---------------------------------------------------------------------------------------------
# Properties over training: monotone masks, exact zeros
# ---------------------------------------------------------------------------------------------

SMALL = {"gating": {"layer0": {"kernel": (3, 4), "bias": (4,)}},
         "layer0": {"alpha": (2, 4, 6), "beta": (2, 6)}, "layer1": {"alpha": (2, 6, 5), "beta": (2, 5)}}


def _small_params(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s).astype(np.float32), SMALL,
                        is_leaf=lambda x: isinstance(x, tuple))


def _random_grads(params: dict, steps: int, seed: int) -> dict:
    """Stacked ``(steps, ...)`` standard-normal gradients (numpy: no PRNG to compile)."""
    rng = np.random.default_rng(seed + 1000)
    return jax.tree.map(lambda x: rng.normal(size=(steps, *x.shape)).astype(np.float32), params)


def _run(tx: optax.GradientTransformation, params: dict, target: float, grads: dict):
    """One update per leading entry of ``grads``; returns per-step masks and params (stacked)."""
    state = with_target_sparsity(tx.init(params), target)

    def body(carry, g):
        p, s = carry
        updates, s = tx.update(g, s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), (s.masks, p)

    _, (masks, ps) = jax.lax.scan(body, (params, state), grads)
    return masks, ps


@functools.cache
def _run_fn(schedule_name: str, update_every: int, steps: int):
    sched = make_schedule(schedule_name, start=0.1, end=0.8, total_steps=steps)
    tx = prune(optax.sgd(0.3), target_sparsity=0.5, schedule=sched, update_every=update_every)
    return sched, jax.jit(functools.partial(_run, tx))


@pytest.mark.parametrize("name,update_every",
                         [(n, 1 if n in ("linear", "one_cycle") else 4) for n in sorted(SCHEDULES)])
@settings(max_examples=4, deadline=None, derandomize=True)
@given(target=st.floats(0.0, 0.99), seed=st.integers(0, 3))
def test_masks_monotone_and_counts_exact_over_updates(name, update_every, target, seed):
    steps = 30
    sched, run = _run_fn(name, update_every, steps)
    params = _small_params(seed)
    masks, ps = run(params, target, _random_grads(params, steps, seed))
    leaves = ("layer0", "layer1")
    kept = np.concatenate([np.asarray(masks[k]["alpha"]).reshape(steps, -1) for k in leaves], axis=1)
    weights = np.concatenate([np.asarray(ps[k]["alpha"]).reshape(steps, -1) for k in leaves], axis=1)
    before = np.concatenate([[np.concatenate([params[k]["alpha"].ravel() for k in leaves])], weights[:-1]])
    n = kept.shape[1]
    assert not np.any(kept[1:] & ~kept[:-1]), "a pruned weight was revived"
    n_pruned = n - kept.sum(axis=1)
    counts = jnp.arange(steps)
    dues = np.asarray(sched.is_update_step(counts, update_every))
    fracs = np.asarray(sched(counts))
    for c in range(steps):
        was_kept = kept[c - 1] if c else np.ones(n, bool)
        if dues[c]:
            k = pruned_count(np.float32(fracs[c] * np.float32(target)), n)
            assert n_pruned[c] == k, (c, fracs[c])
            # Brute force: the k lowest |w| of the weights this update saw, the pruned ones first.
            scores = np.where(was_kept, np.abs(before[c]), -np.inf)
            np.testing.assert_array_equal(~kept[c], reference_pruned(scores, k))
        else:
            np.testing.assert_array_equal(kept[c], was_kept)
    assert n_pruned[-1] == pruned_count(target, n)  # the window's last step is an update step
    # Pruned weights are exactly zero after every step; biases and gating are never masked.
    assert np.all(weights[~kept] == 0.0)
    assert np.asarray(masks["layer0"]["beta"]).shape == (steps,)


def _adamw_tx(kind: str):
    if kind == "adamwr":
        return optim.adamwr(learning_rate=0.05, weight_decay=0.5, n_batches=5, te=2, decay_mode="decoupled")
    return optax.adamw(0.05, weight_decay=0.5)


@functools.cache
def _adam_run(kind: str):
    sched = make_schedule("agp", start=0.0, end=0.5, total_steps=200)
    tx = prune(_adamw_tx(kind), target_sparsity=0.5, schedule=sched, update_every=7, prunable=EXPERTS_AND_GATING)
    return jax.jit(functools.partial(_run, tx))


@pytest.mark.parametrize("kind", ["adamwr", "optax.adamw"])
@settings(max_examples=3, deadline=None, derandomize=True)
@given(target=st.floats(0.05, 0.95), seed=st.integers(0, 100))
def test_pruned_weights_stay_exactly_zero_under_adam_with_decoupled_decay(kind, target, seed):
    params = _small_params(seed)
    masks, ps = _adam_run(kind)(params, target, _random_grads(params, 200, seed))
    n = 0
    zeros_end = 0
    for path in (("layer0", "alpha"), ("layer1", "alpha"), ("gating", "layer0", "kernel")):
        m = masks
        p = ps
        for k in path:
            m, p = m[k], p[k]
        m, p = np.asarray(m), np.asarray(p)
        assert np.all(p[~m] == 0.0)  # every step: exactly 0, not merely small
        assert np.all(p[-1][m[-1]] != 0.0)
        n += m[-1].size
        zeros_end += int((p[-1] == 0.0).sum())
    assert zeros_end == pruned_count(target, n)


# ---------------------------------------------------------------------------------------------
# vmap over levels
# ---------------------------------------------------------------------------------------------


def test_vmap_over_stacked_targets_equals_separate_runs():
    steps = 16
    sched = make_schedule("one_cycle", start=0.0, end=0.6, total_steps=steps)
    params = _small_params(0)
    grads = _random_grads(params, steps, 0)
    targets = [0.3, 0.6, 0.9]

    def make(axis_name):
        return prune(optax.adamw(0.05, weight_decay=0.1), target_sparsity=0.0, schedule=sched,
                     update_every=3, axis_name=axis_name)

    def run(tx, p, s):  # all steps for one level
        def body(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(body, (p, s), grads)[0]

    tx = make(None)
    states = [with_target_sparsity(tx.init(params), t) for t in targets]
    run_one = jax.jit(functools.partial(run, tx))  # one program for the three levels
    separate = [run_one(params, s) for s in states]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    assert isinstance(stacked, PruningState) and stacked.target_sparsity.shape == (3,)
    p_stacked = jax.tree.map(lambda x: jnp.stack([x] * 3), params)
    n = sum(params[f"layer{j}"]["alpha"].size for j in range(2))
    for axis_name in (None, "level"):
        p_v, s_v = jax.jit(jax.vmap(functools.partial(run, make(axis_name)), axis_name=axis_name))(p_stacked, stacked)
        for i, t in enumerate(targets):
            p, s = separate[i]
            for a, b in zip(jax.tree.leaves(s.masks), jax.tree.leaves(jax.tree.map(lambda x: x[i], s_v.masks))):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            # Parameters to float32 rounding (XLA fuses the vmapped Adam arithmetic differently).
            for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(jax.tree.map(lambda x: x[i], p_v))):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
            zeros = sum(int((np.asarray(p_v[f"layer{j}"]["alpha"][i]) == 0).sum()) for j in range(2))
            assert zeros == pruned_count(t, n)


def test_axis_name_keeps_the_mask_update_a_real_branch_under_vmap():
    sched = make_schedule("linear", start=0.0, end=1.0, total_steps=10)
    params = _small_params(0)

    def jaxpr(axis_name):
        tx = prune(optax.sgd(0.1), target_sparsity=0.5, schedule=sched, axis_name=axis_name)
        s = jax.tree.map(lambda x: jnp.stack([x, x]), tx.init(params))
        p = jax.tree.map(lambda x: jnp.stack([x, x]), params)
        f = jax.vmap(lambda g, s, p: tx.update(g, s, p), axis_name="level")
        return str(jax.make_jaxpr(f)(p, s, p))

    assert "cond[" in jaxpr("level")
    assert "cond[" not in jaxpr(None)  # batched predicate: the cond became a select (masks every step)


# ---------------------------------------------------------------------------------------------
# Criteria, reports, errors
# ---------------------------------------------------------------------------------------------


def test_random_criterion_exact_count_and_seeded():
    params = {"layer0": {"alpha": np.ones((2, 8, 8), np.float32), "beta": np.zeros((2, 8), np.float32)}}

    def masks_fn(seed):
        tx = prune(optax.identity(), target_sparsity=0.25, schedule=ONE_SHOT, criterion="random", seed=seed)
        return jax.jit(lambda p: tx.update(p, tx.init(p), p)[1].masks["layer0"]["alpha"])

    f0 = masks_fn(0)  # (one compilation per seed: the key is derived from the static seed)
    a, b, c = np.asarray(f0(params)), np.asarray(f0(params)), np.asarray(masks_fn(1)(params))
    assert (~a).sum() == 32 and (~c).sum() == 32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sparsity_report_on_params_and_masks():
    params = {"gating": {"layer0": {"kernel": np.zeros((2, 2), np.float32)}},
              "layer0": {"alpha": np.array([[0, 1], [0, 0]], np.float32), "beta": np.zeros(2, np.float32)},
              "layer1": {"alpha": np.array([1, 2, 3, 0], np.float32)}}
    rep = sparsity_report(params)
    assert rep == {"layer0/alpha": 0.75, "layer1/alpha": 0.25, "overall": 0.5}
    assert sparsity_report(params, EXPERTS_AND_GATING)["overall"] == 8 / 12
    masks = {"gating": {"layer0": {"kernel": np.bool_(True)}}, "layer0": {"alpha": np.array([True, False])}}
    assert sparsity_report(masks) == {"layer0/alpha": 0.5, "overall": 0.5}
    # The traceable count (run on the devices by sweeps) agrees with the host report.
    pruned, entries = jax.jit(pruned_entries)(masks)
    assert (int(pruned), int(entries)) == (1, 2)


def test_default_filter_selects_expert_matrices_only():
    params = {"gating": {"layer0": {"kernel": np.ones((2, 2)), "bias": np.ones(2)}},
              "layer0": {"alpha": np.ones((2, 2, 2)), "beta": np.ones((2, 2))},
              "layer1": {"alpha": np.ones((2, 2, 2)), "beta": np.ones((2, 2))}}
    assert prunable_paths(params) == ["layer0/alpha", "layer1/alpha"]
    assert prunable_paths(params, EXPERTS_AND_GATING) == ["gating/layer0/kernel", "layer0/alpha", "layer1/alpha"]
    assert prunable_paths(params, lambda path, leaf: True) == ["gating/layer0/kernel", "layer0/alpha", "layer1/alpha"]


def test_bad_settings_are_clear_errors():
    sched = make_schedule("linear", start=0.0, end=1.0, total_steps=10)
    inner = optax.sgd(0.1)
    for target in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="target_sparsity"):
            prune(inner, target_sparsity=target, schedule=sched)
    with pytest.raises(ValueError, match="update_every"):
        prune(inner, target_sparsity=0.5, schedule=sched, update_every=0)
    with pytest.raises(ValueError, match="scope"):
        prune(inner, target_sparsity=0.5, schedule=sched, scope="layer")
    with pytest.raises(ValueError, match="granularity"):
        prune(inner, target_sparsity=0.5, schedule=sched, granularity="channel")
    with pytest.raises(ValueError, match="criterion"):
        prune(inner, target_sparsity=0.5, schedule=sched, criterion="l3")
    with pytest.raises(ValueError, match="Schedule"):
        prune(inner, target_sparsity=0.5, schedule="linear")
    params = {"layer0": {"alpha": jnp.ones((2, 4, 4)), "beta": jnp.ones((2, 4))}}
    with pytest.raises(ValueError, match="selects no parameter"):
        prune(inner, target_sparsity=0.5, schedule=sched, prunable=r"decoder/.*").init(params)
    with pytest.raises(ValueError, match="selects no parameter"):  # biases are never pruned
        prune(inner, target_sparsity=0.5, schedule=sched, prunable=r"layer0/beta").init(params)
    tx = prune(inner, target_sparsity=0.5, schedule=sched)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="target_sparsity"):
        with_target_sparsity(tx.init(params), 1.0)
    with pytest.raises(ValueError, match="PruningState"):
        find_pruning_state(optax.sgd(0.1).init(params))


# ---------------------------------------------------------------------------------------------
# Inside the real train step, and through a checkpoint
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # trains a MANN for 30 steps (the fast sweep test also prunes inside the training step)
def test_prune_inside_make_train_step_reaches_target_exactly(tmp_path):
    config = default.get_config()
    config.model.update(hidden_sizes=(16, 16), n_experts=2)
    fns = ModelFunctions.of(build_model(config.model, seed=0))
    steps, target = 30, 0.8
    sched = make_schedule("one_cycle", start=0.1, end=0.7, total_steps=steps)
    tx = prune(make_optimizer(config.train, n_batches=10), target_sparsity=target, schedule=sched, update_every=2)
    state = init_state(fns, tx, seed=0)
    step = jax.jit(make_train_step(fns, tx))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, layout.INPUT_DIM)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(64, layout.OUTPUT_DIM)), jnp.float32)
    for _ in range(steps):
        state, metrics = step(state, x, y, jnp.asarray(rng.integers(0, 64, 16), jnp.int32))
        assert np.isfinite(float(metrics["loss"]))
    ps = find_pruning_state(state.opt_state)
    assert int(ps.count) == int(state.step) == steps
    n = sum(np.asarray(state.params[f"layer{i}"]["alpha"]).size for i in range(3))
    zeros = sum(int((np.asarray(state.params[f"layer{i}"]["alpha"]) == 0).sum()) for i in range(3))
    assert zeros == pruned_count(target, n)
    rep = sparsity_report(state.params)
    assert rep["overall"] == pruned_count(target, n) / n
    assert sparsity_report(ps.masks) == rep
    # The whole state (bool masks included) round-trips through an Orbax checkpoint.
    ckpt = Checkpoints(tmp_path / "ckpt", save_every=1, keep=1)
    ckpt.save(steps, state, {"note": "pruning"})
    restored, _ = ckpt.restore(jax.tree.map(np.zeros_like, state))
    ckpt.close()
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert find_pruning_state(restored.opt_state).masks["layer0"]["alpha"].dtype == np.bool_


def test_steps_without_mask_update_can_run_the_update_free_transformation():
    # The loops run prune(..., mask_updates=False) on the steps mask_update_due rejects: on those
    # steps it must give exactly what the full transformation gives (same state in, same state out),
    # and on its own it never changes the masks.
    steps, every = 24, 5
    sched = make_schedule("one_cycle", start=0.1, end=0.8, total_steps=steps)
    adam = optim.adamwr(learning_rate=0.05, weight_decay=0.5, n_batches=4, te=2)
    full = prune(adam, target_sparsity=0.6, schedule=sched, update_every=every)
    apply_only = prune(adam, target_sparsity=0.6, schedule=sched, update_every=every, mask_updates=False)
    params = _small_params(0)
    grads = _random_grads(params, steps, 0)
    state_full = state_mixed = with_target_sparsity(full.init(params), 0.6)
    assert jax.tree.structure(apply_only.init(params)) == jax.tree.structure(state_full)
    p_full = p_mixed = params
    step_full, step_apply = jax.jit(full.update), jax.jit(apply_only.update)
    for c in range(steps):
        g = jax.tree.map(lambda a: a[c], grads)
        u, state_full = step_full(g, state_full, p_full)
        p_full = optax.apply_updates(p_full, u)
        u, state_mixed = (step_full if sched.mask_update_due(c, every) else step_apply)(g, state_mixed, p_mixed)
        p_mixed = optax.apply_updates(p_mixed, u)
        jax.tree.map(np.testing.assert_array_equal, (p_mixed, state_mixed), (p_full, state_full))
    assert 0 < float(np.mean(~np.asarray(state_full.masks["layer0"]["alpha"]))) < 1
    # Alone, the update-free transformation never prunes.
    _, state = step_apply(jax.tree.map(lambda a: a[0], grads), with_target_sparsity(apply_only.init(params), 0.6),
                          params)
    state = state._replace(count=jnp.asarray(sched.end_step, jnp.int32))
    _, state = step_apply(jax.tree.map(lambda a: a[1], grads), state, params)
    assert bool(np.all(np.asarray(state.masks["layer0"]["alpha"])))
