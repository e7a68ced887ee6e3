"""Structured granularities: whole hidden units across experts and layers, shrink == masked, n:m groups."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from mann_jax.model import MANN
from mann_jax.pruning import (
    hidden_sizes_after,
    make_schedule,
    prune,
    pruned_count,
    shrink,
    sparsity_report,
    units_from_masks,
    with_target_sparsity,
)
from mann_jax.train import ModelFunctions

FAST = settings(max_examples=10, deadline=None, derandomize=True)
ONE_SHOT = make_schedule("one_shot", start=0.0, end=0.0, total_steps=1)
K, IN, H0, H1, OUT = 3, 8, 6, 5, 4


def _mann_like(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return {"gating": {"layer0": {"kernel": f(2, 3), "bias": f(3)}},
            "layer0": {"alpha": f(K, IN, H0), "beta": f(K, H0)},
            "layer1": {"alpha": f(K, H0, H1), "beta": f(K, H1)},
            "layer2": {"alpha": f(K, H1, OUT), "beta": f(K, OUT)}}


@functools.cache
def _neuron_step(scope: str):
    tx = prune(optax.sgd(0.0), target_sparsity=0.0, schedule=ONE_SHOT, granularity="neuron", scope=scope)

    @jax.jit
    def run(params, target):
        state = with_target_sparsity(tx.init(params), target)
        updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        return optax.apply_updates(params, updates), state.masks

    return run


def _reference_units(params: dict, k: int, scores_of_layers: list[np.ndarray]) -> np.ndarray:
    """Pruned units (one-shot, all alive), brute force.

    One layer (local): the ``min(k, H - 1)`` lowest raw scores, ties by position. Several layers
    (global): each layer's scores divided by their mean absolute value, the best unit of every
    layer (last in the ranking) protected, then the ``min(k, N - layers)`` lowest of the rest.
    """
    if len(scores_of_layers) > 1:
        scores_of_layers = [s / np.mean(np.abs(s)) for s in scores_of_layers]
    s = np.concatenate(scores_of_layers)
    layer = np.concatenate([np.full(len(x), i) for i, x in enumerate(scores_of_layers)])
    order = np.lexsort((np.arange(s.size), s))
    protected = {[j for j in order if layer[j] == i][-1] for i in range(len(scores_of_layers))}
    candidates = [j for j in order if j not in protected]
    pruned = np.zeros(s.size, bool)
    pruned[candidates[:min(k, s.size - len(protected))]] = True
    return pruned


def _l1_unit_scores(params: dict) -> tuple[np.ndarray, np.ndarray]:
    a0, a1, a2 = (np.abs(np.asarray(params[f"layer{i}"]["alpha"], np.float64)) for i in range(3))
    return a0.sum(axis=(0, 1)) + a1.sum(axis=(0, 2)), a1.sum(axis=(0, 1)) + a2.sum(axis=(0, 2))


@FAST
@given(seed=st.integers(0, 10_000), target=st.floats(0.0, 0.99), scope=st.sampled_from(["global", "local"]))
def test_neuron_pruning_removes_whole_units_everywhere(seed, target, scope):
    params = _mann_like(seed)
    new, masks = _neuron_step(scope)(params, jnp.float32(target))
    u0, u1 = (np.asarray(u) for u in units_from_masks(masks))
    s0, s1 = _l1_unit_scores(params)
    if scope == "global":
        want = ~_reference_units(params, pruned_count(target, H0 + H1), [s0, s1])
        np.testing.assert_array_equal(np.concatenate([u0, u1]), want)
    else:
        np.testing.assert_array_equal(u0, ~_reference_units(params, pruned_count(target, H0), [s0]))
        np.testing.assert_array_equal(u1, ~_reference_units(params, pruned_count(target, H1), [s1]))
    a0, a1, a2 = (np.asarray(new[f"layer{i}"]["alpha"]) for i in range(3))
    b0, b1 = np.asarray(new["layer0"]["beta"]), np.asarray(new["layer1"]["beta"])
    for j in range(H0):  # unit j of hidden layer 0: its column in layer0, its bias, its row in layer1
        dead = [np.all(a0[:, :, j] == 0), np.all(b0[:, j] == 0), np.all(a1[:, j, :] == 0)]
        assert all(dead) if not u0[j] else not any(dead[:2])
    for j in range(H1):
        dead = [np.all(a1[:, :, j] == 0), np.all(b1[:, j] == 0), np.all(a2[:, j, :] == 0)]
        assert all(dead) if not u1[j] else not any(dead[:2])
    # Untouched leaves: gating and the output bias.
    np.testing.assert_array_equal(np.asarray(new["layer2"]["beta"]), params["layer2"]["beta"])
    np.testing.assert_array_equal(np.asarray(new["gating"]["layer0"]["kernel"]), params["gating"]["layer0"]["kernel"])


def test_neuron_units_are_never_revived_under_a_gradual_schedule():
    steps = 12
    sched = make_schedule("linear", start=0.0, end=0.75, total_steps=steps)
    tx = prune(optax.sgd(0.5), target_sparsity=0.8, schedule=sched, granularity="neuron", scope="local")
    params = _mann_like(3)
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda x: rng.normal(size=(steps, *x.shape)).astype(np.float32), params)

    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), units_from_masks(s.masks)

    _, (u0, u1) = jax.jit(lambda p, g: jax.lax.scan(body, (p, tx.init(p)), g))(params, grads)
    for u, h in ((np.asarray(u0), H0), (np.asarray(u1), H1)):
        assert not np.any(u[1:] & ~u[:-1])
        assert (~u[-1]).sum() == pruned_count(0.8, h)


def test_shrink_gives_a_smaller_mann_with_the_masked_outputs():
    kw = dict(n_experts=3, gating_hidden=8, keep_prob=0.7)
    fns = ModelFunctions.of(MANN(hidden_sizes=(16, 12), rngs=nnx.Rngs(0), **kw))
    rng = np.random.default_rng(1)
    # Non-zero biases everywhere, so that a unit's bias really has to be removed with it.
    params = jax.tree.map(lambda a: a + rng.normal(0, 0.1, a.shape).astype(np.float32), fns.params)
    sched = make_schedule("linear", start=0, end=0.5, total_steps=6)
    # Local: at this tiny size the raw L1 unit scores of hidden layer 1 (fan-in 16) are all below
    # those of hidden layer 0 (fan-in 480), so a global ranking of raw scores would empty layer 1
    # (global neuron pruning therefore ranks layer-normalised scores and keeps a unit per layer:
    # see test_global_neuron_pruning_never_empties_a_layer).
    tx = prune(optax.sgd(1e-3), target_sparsity=0.5, schedule=sched, granularity="neuron", scope="local")

    @jax.jit
    def run(p, grads):
        def body(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(body, (p, tx.init(p)), grads)[0]

    grads = jax.tree.map(lambda a: rng.normal(size=(6, *a.shape)).astype(np.float32), params)
    params, state = run(params, grads)
    sizes = hidden_sizes_after(state.masks)
    assert sizes == (16 - pruned_count(0.5, 16), 12 - pruned_count(0.5, 12))
    small_params = shrink(params, state.masks)
    small = ModelFunctions.of(MANN(hidden_sizes=sizes, rngs=nnx.Rngs(1), **kw))
    assert jax.tree.map(jnp.shape, small_params) == jax.tree.map(jnp.shape, small.params)
    x = jnp.asarray(rng.normal(size=(10, 480)), jnp.float32)
    np.testing.assert_allclose(np.asarray(small.predict(small_params, x)), np.asarray(fns.predict(params, x)),
                               atol=1e-5, rtol=0)
    assert sparsity_report(state.masks)["layer0/beta"] == 1 - sizes[0] / 16


@pytest.mark.parametrize("target", [0.6, 0.75, 0.8, 0.95])
def test_global_neuron_pruning_never_empties_a_layer(target):
    # layer2's weights are 1000x the others: every raw L1 score of hidden layer 1 (whose outgoing
    # weights are layer2's) is far above every score of hidden layer 0, so a raw global ranking
    # would prune all of layer 0 first (the failure seen at 75 %: a constant network output).
    params = _mann_like(7)
    params["layer2"]["alpha"] = params["layer2"]["alpha"] * np.float32(1000.0)
    s0, s1 = _l1_unit_scores(params)
    assert s0.max() < s1.min()
    k = pruned_count(target, H0 + H1)
    raw = np.zeros(H0 + H1, bool)
    raw[np.lexsort((np.arange(H0 + H1), np.concatenate([s0, s1])))[:k]] = True
    assert raw[:H0].all() == (k >= H0)  # what the raw ranking would have done
    _, masks = _neuron_step("global")(params, jnp.float32(target))
    u0, u1 = (np.asarray(u) for u in units_from_masks(masks))
    assert u0.any() and u1.any()  # no layer emptied
    # Exact count: round(s * (H0 + H1)), except that each layer keeps at least one unit.
    assert (~u0).sum() + (~u1).sum() == min(k, H0 + H1 - 2)
    if k <= H0 + H1 - 2:
        assert (~u0).sum() + (~u1).sum() == k
    np.testing.assert_array_equal(np.concatenate([u0, u1]), ~_reference_units(params, k, [s0, s1]))
    sizes = hidden_sizes_after(masks)
    assert min(sizes) >= 1 and sum(sizes) == H0 + H1 - min(k, H0 + H1 - 2)


@pytest.mark.parametrize("scope", ["global", "local"])
def test_neuron_pruning_keeps_a_unit_per_layer_at_the_highest_sparsity(scope):
    params = _mann_like(11)
    _, masks = _neuron_step(scope)(params, jnp.float32(0.99))  # round(0.99 * H) = H: capped
    u0, u1 = (np.asarray(u) for u in units_from_masks(masks))
    assert u0.sum() == 1 and u1.sum() == 1
    s0, s1 = _l1_unit_scores(params)
    if scope == "local":  # the survivor is the best unit of its layer
        assert s0[u0][0] == s0.max() and s1[u1][0] == s1.max()
    np.testing.assert_array_equal(
        np.asarray(shrink(params, masks)["layer1"]["alpha"]).shape, (K, 1, 1))


def test_shrink_needs_neuron_masks():
    params = _mann_like(0)
    tx = prune(optax.sgd(0.1), target_sparsity=0.5, schedule=ONE_SHOT)
    with pytest.raises(ValueError, match="neuron"):
        shrink(params, tx.init(params).masks)


# ---------------------------------------------------------------------------------------------
# n:m
# ---------------------------------------------------------------------------------------------


def _nm_reference(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """Kept mask: per group of m consecutive inputs (axis -2), the m - n lowest |w| (lower index on ties) go."""
    kept = np.ones(w.shape, bool)
    k_, rows, cols = w.shape
    for e in range(k_):
        for c in range(cols):
            for g in range(0, rows, m):
                s = np.abs(w[e, g:g + m, c])
                order = np.lexsort((np.arange(m), s))
                kept[e, g + order[: m - n], c] = False
    return kept


@functools.cache
def _nm_run(n: int, m: int, steps: int):
    sched = make_schedule("linear", start=0.5, end=1.0, total_steps=steps)
    tx = prune(optax.sgd(0.1), target_sparsity=1 - n / m, schedule=sched, granularity="n:m", n_m=(n, m))

    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        p = optax.apply_updates(p, u)
        return (p, s), (s.masks["layer0"]["alpha"], p["layer0"]["alpha"])

    return sched, jax.jit(lambda p, g: jax.lax.scan(body, (p, tx.init(p)), g)[1])


@FAST
@given(seed=st.integers(0, 10_000), nm=st.sampled_from([(2, 4), (1, 4), (3, 8)]), levels=st.sampled_from([3, 1000]))
def test_n_m_keeps_the_n_largest_of_every_m_inputs_from_the_window_start(seed, nm, levels):
    n, m = nm
    steps = 8
    rng = np.random.default_rng(seed)
    w = (rng.integers(1, levels + 1, (2, 16, 3)) * rng.choice([-1.0, 1.0], (2, 16, 3))).astype(np.float32)
    params = {"layer0": {"alpha": w, "beta": np.zeros((2, 3), np.float32)}}
    grads = jax.tree.map(lambda x: rng.normal(size=(steps, *x.shape)).astype(np.float32), params)
    sched, run = _nm_run(n, m, steps)
    masks, ws = (np.asarray(a) for a in run(params, grads))
    first = sched.start_step  # the schedule first exceeds 0 here (linear: 0 at t = 0 -> use the next step)
    on = [c for c in range(steps) if float(sched(c)) > 0][0]
    assert first <= on
    np.testing.assert_array_equal(masks[:on], True)  # dense until the schedule is above 0
    # The pattern is chosen from the weights as they are at that step, then never changes.
    w_at = w if on == 0 else ws[on - 1]
    np.testing.assert_array_equal(masks[on], _nm_reference(w_at, n, m))
    np.testing.assert_array_equal(masks[on:], np.broadcast_to(masks[on], masks[on:].shape))
    groups = masks[-1].reshape(2, 16 // m, m, 3)
    np.testing.assert_array_equal(groups.sum(axis=2), n)
    assert np.all(ws[-1][~masks[-1]] == 0) and (ws[-1] == 0).mean() == 1 - n / m


def test_n_m_settings_are_checked():
    sched = make_schedule("one_shot", start=0.0, end=0.0, total_steps=10)
    with pytest.raises(ValueError, match="1 - n/m"):
        prune(optax.sgd(0.1), target_sparsity=0.3, schedule=sched, granularity="n:m", n_m=(2, 4))
    with pytest.raises(ValueError, match="n:m needs"):
        prune(optax.sgd(0.1), target_sparsity=0.0, schedule=sched, granularity="n:m", n_m=(4, 4))
    params = {"layer0": {"alpha": np.ones((2, 6, 3), np.float32)}}
    with pytest.raises(ValueError, match="multiple of m=4"):
        prune(optax.sgd(0.1), target_sparsity=0.5, schedule=sched, granularity="n:m").init(params)
    # target 0: the pattern is never applied.
    params = {"layer0": {"alpha": np.ones((2, 8, 3), np.float32)}}
    tx = prune(optax.sgd(0.1), target_sparsity=0.0, schedule=sched, granularity="n:m")
    _, s = tx.update(params, tx.init(params), params)
    assert bool(np.all(np.asarray(s.masks["layer0"]["alpha"])))


def test_neuron_settings_are_checked():
    with pytest.raises(ValueError, match="prunable"):
        prune(optax.sgd(0.1), target_sparsity=0.5, schedule=ONE_SHOT, granularity="neuron", prunable=".*")
    tx = prune(optax.sgd(0.1), target_sparsity=0.5, schedule=ONE_SHOT, granularity="neuron")
    with pytest.raises(ValueError, match="MANN"):
        tx.init({"dense": {"kernel": np.ones((2, 2), np.float32)}})
