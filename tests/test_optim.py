"""AdamWR: the schedule reproduces the original per-batch state machine; decay modes behave."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mann_jax.optim import (
    MULTIPLIER_FLOOR,
    adamwr,
    hyperparams_at,
    learning_rate_schedule,
    multiplier_schedule,
    normalized_weight_decay,
    restart_epochs,
    scale_by_tf_adam,
    weight_decay_schedule,
)


class OriginalAdamWParameter:
    """The original AI4Animation ``AdamWParameter`` state machine (multiplier part)."""

    def __init__(self, te: int, tmult: int, n_batches: int) -> None:
        self.te, self.tmult, self.n_batches = te, tmult, n_batches
        self.epoch_next = te + 1
        self.t_cur = 0.0
        self.h_cur = 0.9

    def multiplier(self, epoch: int) -> float:
        self.t_cur = self.t_cur + 1.0 / (self.te * self.n_batches)
        if self.t_cur >= self.h_cur:
            self.t_cur = self.h_cur
        if self.t_cur >= self.h_cur and epoch == self.epoch_next:
            self.t_cur = 0
            self.te = self.te * self.tmult
            self.epoch_next = self.epoch_next + self.te
        return 0.5 * (1 + np.cos(np.pi * self.t_cur))


def _original(n_epochs: int, n_batches: int, te: int = 10, tmult: int = 2) -> np.ndarray:
    ap = OriginalAdamWParameter(te, tmult, n_batches)
    return np.array([ap.multiplier(e) for e in range(n_epochs) for _ in range(n_batches)])


def _ours(n_epochs: int, n_batches: int, te: int = 10, tmult: int = 2) -> np.ndarray:
    sched = jax.jit(jax.vmap(multiplier_schedule(n_batches, te=te, tmult=tmult)))
    return np.asarray(sched(jnp.arange(n_epochs * n_batches)))


def _restarts(mult: np.ndarray, n_batches: int) -> list[int]:
    """Epochs whose first batch jumps back up to multiplier 1."""
    jumps = np.nonzero(np.diff(mult) > 0.5)[0] + 1
    assert np.all(jumps % n_batches == 0), "restarts must fall on the first batch of an epoch"
    return [int(j // n_batches) for j in jumps]


def test_restart_epochs_are_11_31_71() -> None:
    n_batches, n_epochs = 7, 150
    mult = _ours(n_epochs, n_batches)
    assert _restarts(mult, n_batches) == [11, 31, 71]
    assert restart_epochs(n_epochs) == [11, 31, 71]
    assert _restarts(_original(n_epochs, n_batches), n_batches) == [11, 31, 71]
    for e in (11, 31, 71):
        assert mult[e * n_batches] == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize(("n_batches", "te", "tmult"), [(7, 10, 2), (3, 2, 3), (5, 3, 1)])
def test_schedule_matches_original_state_machine(n_batches: int, te: int, tmult: int) -> None:
    n_epochs = 150
    ours = _ours(n_epochs, n_batches, te, tmult)
    ref = _original(n_epochs, n_batches, te, tmult)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_multiplier_floor() -> None:
    assert MULTIPLIER_FLOOR == pytest.approx(0.0245, abs=1e-4)
    mult = _ours(150, 7)
    assert mult.min() == pytest.approx(MULTIPLIER_FLOOR, abs=1e-6)
    assert mult.min() == pytest.approx(0.0245, abs=1e-4)
    # Flat at the floor just before each restart (epoch 10, 30, 70).
    for e in (10, 30, 70):
        np.testing.assert_allclose(mult[e * 7 : e * 7 + 7], MULTIPLIER_FLOOR, atol=1e-6)


def test_learning_rate_and_weight_decay_normalisation() -> None:
    n_batches = 7
    wd0 = normalized_weight_decay(2.5e-3, n_batches=n_batches, te=10)
    assert wd0 == pytest.approx(2.5e-3 / math.sqrt(70))
    mult = multiplier_schedule(n_batches)
    lr = learning_rate_schedule(1e-4, n_batches=n_batches)
    wd = weight_decay_schedule(2.5e-3, n_batches=n_batches)
    for step in (0, 5, 77, 300, 1000):
        m = float(mult(step))
        assert float(lr(step)) == pytest.approx(1e-4 * m, rel=1e-6)
        assert float(wd(step)) == pytest.approx(wd0 * m, rel=1e-6)
    # Normalised once with the INITIAL Te, also after restarts (Te doubled).
    assert float(wd(31 * n_batches)) == pytest.approx(wd0, rel=1e-6)
    hp = hyperparams_at(0, n_batches=n_batches)
    assert float(hp["learning_rate"]) == pytest.approx(1e-4 * float(mult(0)), rel=1e-6)
    assert float(hyperparams_at(0, n_batches=n_batches, decay_mode="none")["weight_decay"]) == 0.0


def test_decoupled_decay_shrinks_a_weight_with_zero_gradient() -> None:
    n_batches = 7
    params = {"w": jnp.full((3,), 2.0)}
    grads = {"w": jnp.zeros((3,))}
    wd = weight_decay_schedule(2.5e-3, n_batches=n_batches)

    tx = adamwr(n_batches=n_batches, decay_mode="decoupled")
    state = tx.init(params)
    p = params
    for step in range(3):
        updates, state = jax.jit(tx.update)(grads, state, p)
        expected = p["w"] * (1.0 - wd(step))
        p = optax.apply_updates(p, updates)
        np.testing.assert_allclose(p["w"], expected, rtol=1e-6)
    assert float(p["w"][0]) < 2.0

    tx = adamwr(n_batches=n_batches, decay_mode="none")
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_array_equal(optax.apply_updates(params, updates)["w"], params["w"])


def test_update_is_minus_lr_times_tf_adam() -> None:
    n_batches = 7
    g = {"w": jnp.array([0.5, -1.0, 1e-3])}
    params = {"w": jnp.zeros((3,))}
    tx = adamwr(n_batches=n_batches, decay_mode="none")
    state = tx.init(params)
    lr = learning_rate_schedule(1e-4, n_batches=n_batches)
    m = np.zeros(3)
    v = np.zeros(3)
    for t in range(1, 5):
        updates, state = tx.update(g, state, params)
        gn = np.asarray(g["w"], np.float64)
        m = 0.9 * m + 0.1 * gn
        v = 0.999 * v + 0.001 * gn * gn
        lr_t = float(lr(t - 1)) * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        np.testing.assert_allclose(updates["w"], -lr_t * m / (np.sqrt(v) + 1e-8), rtol=1e-5)


def test_tf_adam_close_to_optax_adam() -> None:
    g = {"w": jax.random.normal(jax.random.key(0), (50,))}
    ours, ref = scale_by_tf_adam(), optax.scale_by_adam()
    s1, s2 = ours.init(g), ref.init(g)
    for _ in range(3):
        u1, s1 = ours.update(g, s1)
        u2, s2 = ref.update(g, s2)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-4)
    assert isinstance(s1, optax.ScaleByAdamState)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="decay_mode"):
        adamwr(n_batches=3, decay_mode="coupled")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_batches"):
        multiplier_schedule(0)
