"""MANN in flax.nnx: shapes, formulations, initialisation, gating, ablation, dropout, vmap."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mann_jax.model import (
    DEFAULT_GATING_INDICES,
    MANN,
    ExpertLinear,
    GatingNetwork,
    apply,
    count_parameters,
    expert_weight_bound,
    gating_weight_bound,
)

SMALL = dict(input_size=24, output_size=10, hidden_sizes=(16, 12), n_experts=4,
             gating_indices=(0, 3, 5, 7, 20), gating_hidden=6)


def _small(seed: int = 0, **kw: Any) -> MANN:
    """A small MANN with O(1) weights so outputs are far from zero."""
    model = MANN(**{**SMALL, **kw}, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed + 100)  # host RNG: no per-shape compilation
    for i in range(3):
        layer = getattr(model, f"layer{i}")
        a = rng.standard_normal(layer.alpha.shape) / math.sqrt(layer.alpha.shape[1])
        layer.alpha[...] = jnp.asarray(a, jnp.float32)
        layer.beta[...] = jnp.asarray(0.1 * rng.standard_normal(layer.beta.shape), jnp.float32)
    return model


def _x(n: int = 6, d: int = 24, seed: int = 1) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, d)), jnp.float32)


_japply = jax.jit(apply, static_argnums=0, static_argnames=("return_gating", "formulation"))


def run(model: MANN, x: jax.Array, rng: jax.Array | None = None, **kw: Any) -> Any:
    """``model(x, rngs=rng, **kw)`` through the jitted pure :func:`apply` (one compile per
    configuration instead of one per eager op: keeps the tests fast)."""
    graphdef, state = nnx.split(model)
    return _japply(graphdef, state, x, rng, **kw)


def _np_expert(model: MANN, x: np.ndarray, k: int) -> np.ndarray:
    """Expert k's plain MLP (ELU, ELU, linear) in numpy."""
    elu = lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0)))
    h = np.asarray(x, np.float64)
    for i in range(3):
        layer = getattr(model, f"layer{i}")
        h = h @ np.asarray(layer.alpha[...][k], np.float64) + np.asarray(layer.beta[...][k])
        if i < 2:
            h = elu(h)
    return h


def test_shapes_default_model() -> None:
    model = MANN(rngs=nnx.Rngs(23456))
    model.eval()
    assert model.gating_indices == DEFAULT_GATING_INDICES
    graphdef, state = nnx.split(model)

    def shape(x_shape: tuple[int, ...], **kw: Any) -> Any:  # traces without compiling: fast
        x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
        out = jax.eval_shape(lambda s, x: apply(graphdef, s, x, **kw), state, x)
        return jax.tree.map(lambda a: a.shape, out)

    assert shape((5, 480), return_gating=True) == ((5, 363), (5, 8))
    assert shape((1, 480), return_gating=True) == ((1, 363), (1, 8))
    assert shape((480,)) == (363,)
    assert shape((2, 3, 480), return_gating=True) == ((2, 3, 363), (2, 3, 8))
    assert run(model, jnp.zeros((1, 480))).shape == (1, 363)
    counts = count_parameters(model)
    assert counts["experts"] == 8 * (480 * 512 + 512 * 512 + 512 * 363 + 512 + 512 + 363)
    assert counts["gating"] == 19 * 32 + 32 + 32 * 32 + 32 + 32 * 8 + 8


def test_layer_formulations_equal() -> None:
    rng = np.random.default_rng(0)
    alpha = jnp.asarray(rng.standard_normal((3, 7, 5)), jnp.float32)
    layer = ExpertLinear(7, 5, 3, alpha=alpha)
    layer.beta[...] = jnp.asarray(rng.standard_normal(layer.beta.shape), jnp.float32)
    x = _x(4, 7)
    omega = jax.nn.softmax(_x(4, 3, seed=4))
    # Float32 products on every backend (an NVIDIA GPU would otherwise use TF32; MANN sets this itself).
    with jax.default_matmul_precision("highest"):
        blend = layer(x, omega, formulation="blend")
        mix = layer(x, omega, formulation="mix")
        ref = sum(omega[:, k : k + 1] * (x @ layer.alpha[...][k] + layer.beta[...][k]) for k in range(3))
    np.testing.assert_allclose(blend, mix, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mix, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("train", [False, True])
def test_model_formulations_equal(train: bool) -> None:
    model = _small()
    model.train() if train else model.eval()
    x = _x(6)
    key = jax.random.key(7)  # same key -> same dropout masks in both formulations
    blend = run(model, x, key, formulation="blend")
    mix = run(model, x, key, formulation="mix")
    np.testing.assert_allclose(blend, mix, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(mix).mean()) > 0.1
    if not train:
        # "auto" (mix) agrees with the explicit formulations at every batch size.
        np.testing.assert_allclose(run(model, x[:1]), run(model, x[:1], formulation="blend"), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(run(model, x[:1]), run(model, x[:1], formulation="mix"))
        np.testing.assert_array_equal(run(model, x), mix)


def test_initialisation_as_original() -> None:
    model = MANN(rngs=nnx.Rngs(23456))
    for layer, (fi, fo) in zip(
        (model.layer0, model.layer1, model.layer2), ((480, 512), (512, 512), (512, 363))
    ):
        a = np.asarray(layer.alpha[...])
        bound = expert_weight_bound(fi, fo)
        assert bound == pytest.approx(math.sqrt(6 / (fi * fo)))
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.999 * bound
        assert a.var() == pytest.approx(bound**2 / 3, rel=0.01)
        assert abs(a.mean()) < 0.01 * bound
        assert not np.any(np.asarray(layer.beta[...]))
        # Experts are independent draws.
        assert not np.allclose(a[0], a[1])
    g = model.gating
    for lin, (fi, fo) in zip((g.layer0, g.layer1, g.layer2), ((19, 32), (32, 32), (32, 8))):
        k = np.asarray(lin.kernel[...])
        bound = gating_weight_bound(fi, fo)
        assert bound == pytest.approx(math.sqrt(6 / (fi + fo)))
        assert k.shape == (fi, fo)
        assert np.abs(k).max() <= bound and np.abs(k).max() > 0.8 * bound
        assert k.var() == pytest.approx(bound**2 / 3, rel=0.25)
        assert not np.any(np.asarray(lin.bias[...]))


def test_gating_softmax_sums_to_one() -> None:
    model = _small()
    model.eval()
    x = 3.0 * _x()
    y, omega = run(model, x, return_gating=True)
    np.testing.assert_allclose(omega.sum(-1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(omega) >= 0)
    # The gating input is the normalised input gathered at gating_indices, nothing else.
    direct = model.gating(x[:, jnp.asarray(SMALL["gating_indices"])])
    np.testing.assert_allclose(omega, direct, rtol=1e-6)
    np.testing.assert_allclose(model.gating_coefficients(x), direct, rtol=1e-6)
    # return_gating does not change the prediction.
    np.testing.assert_array_equal(y, run(model, x))
    g = GatingNetwork(5, 3, hidden=4, rngs=nnx.Rngs(0))
    g.eval()
    np.testing.assert_allclose(g(_x(2, 5)).sum(-1), 1.0, rtol=1e-6)


def test_expert_mask_removes_and_renormalises() -> None:
    model = _small()
    model.eval()
    x = _x()
    _, omega = run(model, x, return_gating=True)
    mask = jnp.array([1.0, 0.0, 1.0, 1.0])
    _, masked = run(model, x, expert_mask=mask, return_gating=True)
    np.testing.assert_allclose(masked[:, 1], 0.0)
    expected = np.asarray(omega) * np.asarray(mask)
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(masked, expected, rtol=1e-5)
    np.testing.assert_allclose(masked.sum(-1), 1.0, rtol=1e-6)
    # All but one masked: the output is that single expert's network.
    for k in range(4):
        only = jnp.zeros(4).at[k].set(1.0)
        for form in ("blend", "mix"):
            y = run(model, x, expert_mask=only, formulation=form)
            np.testing.assert_allclose(y, _np_expert(model, np.asarray(x), k), rtol=1e-4, atol=1e-5)


def test_dropout_only_in_training() -> None:
    model = _small()
    x = _x()
    model.eval()
    y_eval = run(model, x)
    np.testing.assert_array_equal(run(model, x, jax.random.key(3)), y_eval)
    model.train()
    a = run(model, x, jax.random.key(3))
    b = run(model, x, jax.random.key(3))
    c = run(model, x, jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert not np.allclose(a, y_eval)
    # Stateful nnx use: the stored stream advances between calls when no key is given.
    train_step = nnx.jit(lambda m, x: m(x))
    assert not np.allclose(train_step(model, x), train_step(model, x))
    # The non-mutating view is deterministic.
    np.testing.assert_array_equal(run(nnx.view(model, deterministic=True), x), y_eval)


def test_split_merge_and_jitted_pure_apply() -> None:
    model = _small()
    model.eval()
    x = _x()
    graphdef, state = nnx.split(model)
    np.testing.assert_array_equal(nnx.merge(graphdef, state)(x), model(x))
    f = jax.jit(lambda s, x: apply(graphdef, s, x))
    np.testing.assert_allclose(f(state, x), model(x), rtol=1e-5, atol=1e-7)  # H100: jit vs eager 2e-6
    # Gradients with respect to the parameters alone (filtered split).
    model.train()
    gd, params, rest = nnx.split(model, nnx.Param, ...)
    loss = lambda p, k: jnp.mean(apply(gd, (p, rest), x, k) ** 2)
    grads = jax.jit(jax.grad(loss))(params, jax.random.key(0))
    assert jax.tree.structure(grads) == jax.tree.structure(params)


@pytest.mark.parametrize("train", [False, True])
def test_vmap_over_stacked_states_equals_separate_calls(train: bool) -> None:
    models = [_small(seed) for seed in (0, 1, 2)]
    for m in models:
        m.train() if train else m.eval()
    graphdef = nnx.split(models[0])[0]
    states = [nnx.split(m)[1] for m in models]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    keys = jax.random.split(jax.random.key(5), 3)
    x = _x()
    batched = jax.jit(jax.vmap(lambda s, k: apply(graphdef, s, x, k)))(stacked, keys)
    for i, m in enumerate(models):
        np.testing.assert_allclose(batched[i], run(m, x, keys[i]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gating_indices"):
        MANN(**{**SMALL, "gating_indices": (0, 99)}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="formulation"):
        MANN(**SMALL, formulation="sum", rngs=nnx.Rngs(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two hidden layers"):
        MANN(**{**SMALL, "hidden_sizes": (16,)}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="matmul_precision"):
        MANN(**SMALL, matmul_precision="fast", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("precision, expected", [("highest", "HIGHEST"), ("default", None)])
def test_matmul_precision_reaches_every_product(precision: str, expected: str | None) -> None:
    # Every dot of the forward pass (gating, experts, biases' blend) carries the model's precision,
    # so a GPU computes the same float32 products as the CPU (no TF32) unless asked otherwise.
    model = _small(matmul_precision=precision)
    graphdef, state = nnx.split(model)
    hlo = jax.jit(apply, static_argnums=0).lower(graphdef, state, _x()).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert len(dots) >= 9  # 3 gating layers + 3 expert layers x (weights, biases)
    for line in dots:
        if expected is None:
            assert "HIGHEST" not in line
        else:
            assert f"precision = [{expected}, {expected}]" in line, line
