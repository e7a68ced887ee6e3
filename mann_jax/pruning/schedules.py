"""Sparsity schedules: how much of the target sparsity is reached at each step.

Two layers:

* A *progress function* ``f(t)`` maps progress ``t`` in [0, 1] through the pruning window to the
  fraction of the final sparsity reached (``f(1) = 1``). :data:`SCHEDULES` holds factories of them
  by name: ``"one_cycle"`` (fasterai ``sched_onecycle``), ``"agp"`` (Zhu & Gupta's cubic),
  ``"linear"``, ``"cosine"``, ``"one_shot"`` and ``"iterative"`` (``n_steps`` equal steps).
* :func:`schedule_from_config` builds the schedule a ``pruning`` config section names; each factory
  reads its own keyword parameters from that section by name (adding a schedule = its factory here
  plus one :data:`SCHEDULES` entry, and its keys with defaults in ``configs/default.py``).
* A :class:`Schedule` places the window in training and maps an optimizer step count (the number
  of updates applied before the current one, as in optax states) to that fraction. The window's
  ``start`` and ``end`` are fractions of training; fraction ``x`` is the step count
  ``round(x * (total_steps - 1))``, so ``end = 1`` is the last step of training and the masks
  computed there are in force after it. Before the window the fraction is 0, from its last step on
  it is exactly 1, and in between ``f(t)`` with ``t = (count - start_step) / (end_step -
  start_step)``.

The pruning wrapper (:func:`mann_jax.pruning.prune`) multiplies the fraction by the target
sparsity, so one schedule serves every target of a sweep.

Formulas (``t`` in [0, 1]):

* one-cycle (DESIGN.md, fasterai): ``(1 + e^(β − α)) / (1 + e^(β − α t))`` with α = 14, β = 6:
  0.0025 at t = 0, 0.04 at 0.2, 0.40 at 0.4, 0.92 at 0.6, 1 at 1.
* AGP (Zhu & Gupta 2017): ``s_t = s_f + (s_i − s_f)(1 − t)^p`` with ``s_i = 0``, ``p = 3``:
  ``1 − (1 − t)^3`` (0.875 at mid-window).
* linear ``t``; cosine ``(1 − cos(π t)) / 2``.
* one-shot: 1 from the window's first step on (all pruning at ``start``; ``end`` is irrelevant).
* iterative: ``n`` equal steps, the i-th (i = 1..n) at ``t = (i − 1) / n``:
  ``(1 + #{i in 1..n−1 : t >= i / n}) / n`` (so ``n_steps = 1`` is one-shot).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mann_jax.config_errors import ConfigError

#: ``f(t)``: progress in [0, 1] -> fraction of the target sparsity reached.
ProgressFn = Callable[[jax.Array], jax.Array]


def one_cycle(alpha: float = 14.0, beta: float = 6.0) -> ProgressFn:
    """fasterai's ``sched_onecycle``: ``(1 + e^(β−α)) / (1 + e^(β−α t))``."""
    num = 1.0 + math.exp(beta - alpha)
    return lambda t: num / (1.0 + jnp.exp(beta - alpha * t))


def agp(power: float = 3.0) -> ProgressFn:
    """Automated gradual pruning (Zhu & Gupta 2017): ``1 − (1 − t)^power``."""
    return lambda t: 1.0 - (1.0 - t) ** power


def linear() -> ProgressFn:
    """``t``."""
    return lambda t: t


def cosine() -> ProgressFn:
    """``(1 − cos(π t)) / 2``."""
    return lambda t: 0.5 * (1.0 - jnp.cos(jnp.pi * t))


def one_shot() -> ProgressFn:
    """All at once at the window's start."""
    return lambda t: jnp.ones_like(t)


def iterative(n_steps: int = 4) -> ProgressFn:
    """``n_steps`` equal steps, the i-th at ``t = (i − 1) / n_steps``."""
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"iterative schedule needs n_steps >= 1, got {n_steps}")
    n = int(n_steps)
    # Compare t with the correctly rounded float32 i / n (rather than floor(n t)), so that a step
    # count exactly at i / n of the window is on step i + 1 despite float32 rounding of t.
    edges = jnp.arange(1, n, dtype=jnp.float32) / jnp.float32(n)

    def fn(t: jax.Array) -> jax.Array:
        t = jnp.asarray(t, jnp.float32)
        passed = jnp.sum(t[..., None] >= edges, axis=-1).astype(jnp.float32)
        return (passed + 1.0) / n

    return fn


SCHEDULES: dict[str, Callable[..., ProgressFn]] = {
    "one_cycle": one_cycle,
    "agp": agp,
    "linear": linear,
    "cosine": cosine,
    "one_shot": one_shot,
    "iterative": iterative,
}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A progress function placed in training: step count -> fraction of the target sparsity.

    Attributes:
        fn: Progress function ``f(t)``.
        start: Window start as a fraction of training, in [0, 1].
        end: Window end as a fraction of training, in [start, 1].
        total_steps: Optimizer steps of the whole run.
        name: For plots and logs.
    """

    fn: ProgressFn
    start: float
    end: float
    total_steps: int
    name: str = "custom"

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ConfigError(f"pruning window needs 0 <= start <= end <= 1, got start={self.start}, end={self.end}")
        if int(self.total_steps) != self.total_steps or self.total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer, got {self.total_steps}")

    @property
    def start_step(self) -> int:
        """Step count of the window's first step."""
        return round(self.start * (self.total_steps - 1))

    @property
    def end_step(self) -> int:
        """Step count of the window's last step (the fraction is 1 from here on)."""
        return round(self.end * (self.total_steps - 1))

    def progress(self, count: jax.Array | int) -> jax.Array:
        """``t`` in [0, 1] at step ``count`` (0 before the window, 1 from its last step)."""
        c = jnp.asarray(count, jnp.int32)
        length = max(self.end_step - self.start_step, 1)
        t = (c - self.start_step).astype(jnp.float32) / jnp.float32(length)
        return jnp.clip(t, 0.0, 1.0)

    def __call__(self, count: jax.Array | int) -> jax.Array:
        """Fraction of the target sparsity at step ``count`` (float32; jit-able)."""
        c = jnp.asarray(count, jnp.int32)
        frac = jnp.clip(jnp.asarray(self.fn(self.progress(c)), jnp.float32), 0.0, 1.0)
        frac = jnp.where(c >= self.end_step, jnp.float32(1.0), frac)
        return jnp.where(c < self.start_step, jnp.float32(0.0), frac)

    def in_window(self, count: jax.Array | int) -> jax.Array:
        """Whether ``count`` lies in ``[start_step, end_step]``."""
        c = jnp.asarray(count, jnp.int32)
        return (c >= self.start_step) & (c <= self.end_step)

    def is_update_step(self, count: jax.Array | int, every: int = 1) -> jax.Array:
        """Mask-update steps: every ``every``-th step of the window from its start, and its last step."""
        c = jnp.asarray(count, jnp.int32)
        return self.in_window(c) & (((c - self.start_step) % every == 0) | (c == self.end_step))

    def mask_update_due(self, count: int, every: int = 1) -> bool:
        """:meth:`is_update_step` on the host, for a Python step count (the loop picks the step to run by it)."""
        if int(every) != every or every < 1:
            raise ValueError(f"every must be an integer >= 1 (steps between mask updates), got {every}")
        c = int(count)
        return self.start_step <= c <= self.end_step and ((c - self.start_step) % every == 0 or c == self.end_step)


def make_schedule(name: str, *, start: float, end: float, total_steps: int, **kwargs: float) -> Schedule:
    """A :class:`Schedule` from a registered progress function.

    Args:
        name: Key of :data:`SCHEDULES`.
        start: Window start as a fraction of training.
        end: Window end as a fraction of training.
        total_steps: Optimizer steps of the whole run.
        **kwargs: Passed to the factory (``alpha``/``beta``, ``power``, ``n_steps``).

    Raises:
        ValueError: unknown name, bad window or bad factory arguments.
    """
    if name not in SCHEDULES:
        raise ConfigError(f"unknown pruning schedule {name!r}; known: {sorted(SCHEDULES)}")
    try:
        fn = SCHEDULES[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad arguments for schedule {name!r}: {e}") from None
    return Schedule(fn=fn, start=float(start), end=float(end), total_steps=int(total_steps), name=name)


def schedule_params(name: str) -> tuple[str, ...]:
    """The keyword parameters of schedule ``name``'s factory: the config keys it reads (see
    :func:`schedule_from_config`)."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown pruning schedule {name!r}; known: {sorted(SCHEDULES)}")
    return tuple(inspect.signature(SCHEDULES[name]).parameters)


def schedule_from_config(pruning_config: ml_collections.ConfigDict, *, total_steps: int) -> Schedule:
    """The :class:`Schedule` of a ``pruning`` config section over ``total_steps``.

    The section names the schedule (``schedule``) and its window (``start``, ``end``); each factory
    reads its own parameters from the section by name (``one_cycle``: ``alpha``, ``beta``; ``agp``:
    ``power``; ``iterative``: ``n_steps``), a key the section lacks keeping the factory's default. So
    a new schedule needs only its factory in :data:`SCHEDULES` and its keys in the config.

    Raises:
        ConfigError: unknown schedule, bad window or bad parameter values.
    """
    name = pruning_config.schedule
    kwargs = {k: pruning_config[k] for k in schedule_params(name) if k in pruning_config}
    return make_schedule(name, start=float(pruning_config.start), end=float(pruning_config.end),
                         total_steps=total_steps, **kwargs)


def plot_schedules(
    schedules: Sequence[str | Schedule],
    path: str | PathLike,
    *,
    total_steps: int = 1000,
    start: float = 0.1,
    end: float = 0.9,
    target: float = 1.0,
) -> Path:
    """Plots sparsity against training step for several schedules (matplotlib, Agg backend).

    Args:
        schedules: Schedules, or registered names (placed in ``[start, end]`` of ``total_steps``).
        path: Output file; the suffix picks the format (``.png`` or ``.svg``).
        total_steps: Steps for named schedules.
        start: Window start for named schedules.
        end: Window end for named schedules.
        target: Final sparsity the fraction is multiplied by.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"plot_schedules writes .png or .svg, got {path.name!r}")
    resolved = [make_schedule(s, start=start, end=end, total_steps=total_steps) if isinstance(s, str) else s
                for s in schedules]
    fig, ax = plt.subplots(figsize=(6, 4))
    for sched in resolved:
        steps = np.arange(sched.total_steps)
        frac = np.asarray(jax.vmap(sched)(jnp.asarray(steps, jnp.int32)))
        ax.plot(steps, target * frac, label=sched.name)
    ax.set_xlabel("step")
    ax.set_ylabel("sparsity" if target != 1.0 else "fraction of target sparsity")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=path.suffix.lower()[1:])
    plt.close(fig)
    return path
