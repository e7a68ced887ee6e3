"""AdamWR: Adam with cosine warm restarts and normalised decoupled weight decay, as in MANN.

The original (AI4Animation ``AdamWParameter.learningRateCosineSGDR``) is called once per batch,
*before* the update, with the current epoch index, and keeps Python-side state::

    T_cur += 1 / (Te * n_batches);  T_cur = min(T_cur, 0.9)
    if T_cur >= 0.9 and epoch == EpochNext:  T_cur = 0; Te *= Tmult; EpochNext += Te
    multiplier = 0.5 * (1 + cos(pi * T_cur))

with ``EpochNext = Te + 1`` initially. So the first cycle lasts ``Te + 1`` epochs (the restart
check fires only once the cap is reached *and* the epoch equals ``EpochNext``), and every later
cycle lasts exactly its ``Te`` epochs. With ``Te = 10, Tmult = 2`` the restarts happen on the
first batch of epochs ``1 + Te (Tmult^k - 1) / (Tmult - 1)`` = 11, 31, 71, 151, ...; between
restarts the multiplier floors at ``0.5 (1 + cos 0.9 pi)`` = 0.02447. On the restart batch
``T_cur`` is 0 (multiplier exactly 1), whereas the very first batch of training already has
``T_cur = 1 / (Te n_batches)``.

Here the same numbers come from a closed form of the optimizer's step count
(:func:`multiplier_schedule`), so the schedule is a jit-able optax schedule with no Python-side
state: step ``s`` (0-based) lies in epoch ``s // n_batches``; the restart table gives the cycle
``k``, its first step ``S_k`` (``-1`` for the first cycle, reproducing the off-by-one above) and
length ``Te_k``; ``T_cur = min((s - S_k) / (Te_k n_batches), t_max)``.

Learning rate and weight decay share the multiplier: ``lr_t = lr0 * m_t`` and
``wd_t = m_t * wd0 / sqrt(n_batches * Te_initial)`` (normalised once, with the initial ``Te``).

Adam is TensorFlow 1's ``AdamOptimizer`` exactly (``b1 = 0.9, b2 = 0.999, eps = 1e-8``, with
"epsilon hat": ``lr_t sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``), which differs from
``optax.scale_by_adam`` only in where ``eps`` sits (:func:`scale_by_tf_adam`).

Two weight-decay behaviours, named honestly:

* ``decay_mode="decoupled"`` (default, the study's text and the intent of the original
  ``AdamW``): ``p <- p - lr_t * adam(g) - wd_t * p``. The decay is NOT multiplied by the learning
  rate (the original subtracted ``var * wdc`` directly).
* ``decay_mode="none"``: what the original code actually ran. Its ``AdamW`` only applied the
  decay in the sparse-gradient path; dense gradients went through the stock ``apply_adam``
  kernel, so training was plain Adam with the cosine-restart learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from mann_jax.config_errors import ConfigError

DecayMode = Literal["decoupled", "none"]

#: ``0.5 * (1 + cos(0.9 pi))``, the multiplier's floor with the original cap ``T_cur <= 0.9``.
MULTIPLIER_FLOOR: float = 0.5 * (1.0 + math.cos(0.9 * math.pi))

_INT32_MAX = 2**31 - 1


def _check(n_batches: int, te: int, tmult: int, t_max: float) -> None:
    if int(n_batches) != n_batches or n_batches < 1:
        raise ValueError(f"n_batches must be a positive integer, got {n_batches}")
    if int(te) != te or te < 1:
        raise ValueError(f"te must be a positive integer (epochs), got {te}")
    if int(tmult) != tmult or tmult < 1:
        raise ValueError(f"tmult must be a positive integer, got {tmult}")
    if not 0.0 < t_max <= 1.0:
        raise ValueError(f"t_max must lie in (0, 1], got {t_max}")


def restart_epoch(k: int, *, te: int = 10, tmult: int = 2) -> int:
    """Epoch index on whose first batch the ``k``-th restart (``k >= 1``) happens."""
    if k < 1:
        raise ValueError(f"restarts are numbered from 1, got {k}")
    if tmult == 1:
        return 1 + k * te
    return 1 + te * (tmult**k - 1) // (tmult - 1)


def restart_epochs(n_epochs: int, *, te: int = 10, tmult: int = 2) -> list[int]:
    """Epoch indices (< ``n_epochs``) whose first batch restarts the cosine cycle.

    Example: ``restart_epochs(150)`` is ``[11, 31, 71]``.
    """
    out: list[int] = []
    k = 1
    while (e := restart_epoch(k, te=te, tmult=tmult)) < n_epochs:
        out.append(e)
        k += 1
    return out


def multiplier_schedule(
    n_batches: int, *, te: int = 10, tmult: int = 2, t_max: float = 0.9
) -> optax.Schedule:
    """The AdamWR multiplier ``0.5 (1 + cos(pi T_cur))`` as a function of the step count.

    Args:
        n_batches: Batches (optimizer steps) per epoch.
        te: Length of the first cosine cycle in epochs (10).
        tmult: Cycle length multiplier after each restart (2).
        t_max: Cap of ``T_cur`` (0.9), i.e. the floor ``0.5 (1 + cos(pi t_max))``.

    Returns:
        A jit-able ``schedule(count) -> float32`` for 0-based step counts (``count`` is the
        number of updates applied before this one, as in optax states).
    """
    _check(n_batches, te, tmult, t_max)
    if tmult == 1:
        starts = None
        lengths = None
    else:
        # Restart epochs E_1, E_2, ... while their first step fits in int32 (at most ~31 entries).
        epochs: list[int] = []
        k = 1
        while (e := restart_epoch(k, te=te, tmult=tmult)) * n_batches <= _INT32_MAX:
            epochs.append(e)
            k += 1
        starts = jnp.asarray(epochs, jnp.int32)
        # Cycle k (0 = first) lasts te * tmult^k epochs; in float32 (only divided by).
        lengths = jnp.asarray(
            [float(te) * tmult**j * n_batches for j in range(len(epochs) + 1)], jnp.float32
        )

    def schedule(count: Any) -> jax.Array:
        step = jnp.asarray(count, jnp.int32)
        epoch = step // n_batches
        if tmult == 1:
            k = jnp.maximum((epoch - 1) // te, 0)
            start_epoch = 1 + k * te
            length = jnp.float32(te * n_batches)
        else:
            assert starts is not None and lengths is not None  # built above for tmult != 1
            k = jnp.searchsorted(starts, epoch, side="right")  # restarts so far
            start_epoch = starts[jnp.maximum(k - 1, 0)]
            length = lengths[k]
        # The first cycle starts "one step early": its first batch already has T = 1/(Te nB).
        start_step = jnp.where(k == 0, -1, start_epoch * n_batches)
        t_cur = jnp.minimum((step - start_step).astype(jnp.float32) / length, t_max)
        return 0.5 * (1.0 + jnp.cos(jnp.pi * t_cur))

    return schedule


def normalized_weight_decay(weight_decay: float, *, n_batches: int, te: int = 10) -> float:
    """``weight_decay / sqrt(n_batches * te)`` with the *initial* cycle length ``te``."""
    return float(weight_decay) / math.sqrt(n_batches * te)


def learning_rate_schedule(
    learning_rate: float = 1e-4,
    *,
    n_batches: int,
    te: int = 10,
    tmult: int = 2,
    t_max: float = 0.9,
) -> optax.Schedule:
    """``lr_t = learning_rate * multiplier(t)`` (for logging, or to drive other optimizers)."""
    mult = multiplier_schedule(n_batches, te=te, tmult=tmult, t_max=t_max)
    return lambda count: learning_rate * mult(count)


def weight_decay_schedule(
    weight_decay: float = 2.5e-3,
    *,
    n_batches: int,
    te: int = 10,
    tmult: int = 2,
    t_max: float = 0.9,
) -> optax.Schedule:
    """``wd_t = multiplier(t) * weight_decay / sqrt(n_batches * te)``."""
    mult = multiplier_schedule(n_batches, te=te, tmult=tmult, t_max=t_max)
    wd = normalized_weight_decay(weight_decay, n_batches=n_batches, te=te)
    return lambda count: wd * mult(count)


def hyperparams_at(
    step: Any,
    *,
    learning_rate: float = 1e-4,
    weight_decay: float = 2.5e-3,
    n_batches: int,
    te: int = 10,
    tmult: int = 2,
    t_max: float = 0.9,
    decay_mode: DecayMode = "decoupled",
) -> dict[str, jax.Array]:
    """Multiplier, learning rate and applied weight decay at ``step``, for logging.

    The weight decay is 0 with ``decay_mode="none"`` (it is not applied).
    """
    mult = multiplier_schedule(n_batches, te=te, tmult=tmult, t_max=t_max)(step)
    wd = normalized_weight_decay(weight_decay, n_batches=n_batches, te=te)
    applied = wd * mult if decay_mode == "decoupled" else jnp.zeros_like(mult)
    return {"multiplier": mult, "learning_rate": learning_rate * mult, "weight_decay": applied}


def _one_minus_pow(b: float, t: jax.Array) -> jax.Array:
    """``1 - b**t`` as ``-expm1(t log b)``: accurate in float32 (``1 - 0.999`` loses 4 digits)."""
    if b == 0.0:
        return jnp.ones_like(t)
    return -jnp.expm1(t * math.log(b))


def scale_by_tf_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam direction exactly as TensorFlow 1's ``AdamOptimizer`` (epsilon hat).

    ``u = sqrt(1 - b2^t) / (1 - b1^t) * m_t / (sqrt(v_t) + eps)`` (to be scaled by ``-lr``).
    The state is an ``optax.ScaleByAdamState`` like ``optax.scale_by_adam``'s.
    """

    def init_fn(params: optax.Params) -> optax.ScaleByAdamState:
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(jnp.zeros_like, params),
        )

    def update_fn(
        updates: optax.Updates, state: optax.ScaleByAdamState, params: Any = None
    ) -> tuple[optax.Updates, optax.ScaleByAdamState]:
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, updates)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        correction = jnp.sqrt(_one_minus_pow(b2, t)) / _one_minus_pow(b1, t)
        out = jax.tree.map(
            lambda m, v: (correction * m / (jnp.sqrt(v) + eps)).astype(m.dtype), mu, nu
        )
        return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adamwr(
    learning_rate: float = 1e-4,
    weight_decay: float = 2.5e-3,
    *,
    n_batches: int,
    te: int = 10,
    tmult: int = 2,
    t_max: float = 0.9,
    decay_mode: DecayMode = "decoupled",
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    decay_mask: Any | Callable[[optax.Params], Any] | None = None,
) -> optax.GradientTransformation:
    """AdamWR as trained in MANN: TF Adam, cosine warm restarts, normalised decoupled decay.

    The chain is ``scale_by_tf_adam -> scale_by_schedule(-lr_t) ->
    add_decayed_weights(-wd_t)``, so the update is ``-lr_t * adam(g) - wd_t * p``; both
    schedules are driven by counts in the optimizer state (nothing on the Python side).

    Args:
        learning_rate: Initial learning rate ``lr0`` (1e-4).
        weight_decay: Weight decay before normalisation ``wd0`` (2.5e-3).
        n_batches: Batches per epoch (steps per epoch).
        te: First cycle length in epochs (10).
        tmult: Cycle length multiplier (2).
        t_max: Cap of ``T_cur`` (0.9).
        decay_mode: ``"decoupled"`` (the study's text; default) or ``"none"`` (what the original
            code ran: plain Adam with the schedule).
        b1: Adam first-moment decay.
        b2: Adam second-moment decay.
        eps: Adam epsilon (TF "epsilon hat").
        decay_mask: Optional optax mask (tree or callable) of the leaves to decay; the original
            decayed every variable.

    Returns:
        An ``optax.GradientTransformation``.
    """
    if decay_mode not in ("decoupled", "none"):
        raise ConfigError(f"decay_mode must be 'decoupled' or 'none', got {decay_mode!r}")
    lr = learning_rate_schedule(learning_rate, n_batches=n_batches, te=te, tmult=tmult, t_max=t_max)
    parts = [scale_by_tf_adam(b1, b2, eps), optax.scale_by_schedule(lambda c: -lr(c))]
    if decay_mode == "decoupled":
        wd = weight_decay_schedule(
            weight_decay, n_batches=n_batches, te=te, tmult=tmult, t_max=t_max
        )
        parts.append(optax.add_decayed_weights(lambda c: -wd(c), mask=decay_mask))
    return optax.chain(*parts)

