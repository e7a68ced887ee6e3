"""Expert activations (the study's Fig. 4): the gating coefficients ω of rollouts, summarised per action.

For a rollout's coefficients ``ω_t`` (K per frame, summing 1):

* the **mean profile** over the frames of the action, ``(K,)`` (:func:`mean_profile`);
* the **entropy** of the coefficients, ``H(ω_t) = −Σ_k ω_tk ln ω_tk`` nats (0 log 0 = 0), averaged
  over those frames (:func:`mean_entropy`): 0 when one expert does everything, ``ln K`` when all
  are equal (flat);
* the **cosine similarity** of two profiles (:func:`cosine_similarity`): 1 = the same mixture;
* the **temporal variation** (:func:`temporal_variation`): how much the coefficients move over
  the action's frames (mean over experts of their standard deviation over time).

The frames of the action (:func:`action_frames`) skip what is not the action: ``walk`` / ``run``
every frame; ``turn*`` from the heading change on; ``sit`` / ``lie`` the hold (the idle lead-in
left out); ``jump`` from the start of the Jump command to 1 s after its end (clamped).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mann_jax.control.scenarios import Scenario
from mann_jax.evaluate.controller import ScenarioRollouts


def entropy(coefficients: Any) -> np.ndarray:
    """``(...)`` entropy in nats of coefficients ``(..., K)`` along the last axis (0 log 0 = 0).

    The coefficients are used as given (they sum to 1 for gating outputs).
    """
    p = np.asarray(coefficients, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=-1)


def mean_entropy(gating: Any) -> np.ndarray:
    """``(...)`` mean over frames of the per-frame entropy of ``gating (..., T, K)``."""
    return entropy(gating).mean(axis=-1)


def mean_profile(gating: Any) -> np.ndarray:
    """``(..., K)`` mean over frames of ``gating (..., T, K)``."""
    return np.asarray(gating, np.float64).mean(axis=-2)


def cosine_similarity(a: Any, b: Any) -> np.ndarray | float:
    """Cosine similarity of profiles ``a``, ``b`` (``(..., K)``, broadcast); NaN where one is all zeros."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(norm > 0, (a * b).sum(axis=-1) / np.where(norm > 0, norm, 1.0), np.nan)
    return float(c) if np.ndim(c) == 0 else c


def temporal_variation(gating: Any) -> np.ndarray:
    """``(...)`` mean over experts of the standard deviation over frames of ``gating (..., T, K)``.

    0 for constant coefficients; a gating that follows the gait cycle (experts handing over within
    each stride) varies.
    """
    return np.asarray(gating, np.float64).std(axis=-2).mean(axis=-1)


def action_frames(scenario: Scenario, *, fps: float) -> tuple[int, int]:
    """``(start, stop)`` frames of a scenario's action (see the module docstring)."""
    n, ev = scenario.num_frames, scenario.events
    if scenario.name.startswith("turn"):
        return ev["turn"], n
    if scenario.name in ("sit", "lie"):
        return ev[scenario.name], n
    if scenario.name == "jump":
        start = ev["jump"]
        return start, min(n, start + int(round((float(scenario.params["jump_seconds"]) + 1.0) * fps)))
    return 0, n


def scenario_gating(rollouts: ScenarioRollouts, *, fps: float) -> dict[str, dict[str, Any]]:
    """Per scenario of ``rollouts`` (every model): the gating over time and its summaries.

    Returns:
      ``{scenario: {"series": (M, T, K) every frame (padding removed), "frames": (start, stop) of
      the action, "profile": (M, K) mean over the action's frames, "entropy": (M,) mean entropy
      over them (nats), "variation": (M,) :func:`temporal_variation` over them after their first
      second (the settling from the start pose left out; NaN when nothing is left)}}``.
    """
    g = np.asarray(rollouts.result.gating, np.float64)
    out = {}
    for s, sc in enumerate(rollouts.scenarios):
        series = g[:, s, :sc.num_frames]
        a, b = action_frames(sc, fps=fps)
        settled = series[:, min(b, a + int(round(fps))):b]
        variation = temporal_variation(settled) if settled.shape[1] > 1 else np.full(len(series), np.nan)
        out[sc.name] = {"series": series, "frames": (a, b), "profile": mean_profile(series[:, a:b]),
                        "entropy": mean_entropy(series[:, a:b]), "variation": variation}
    return out


def max_entropy(n_experts: int) -> float:
    """``ln K``: the entropy of equal coefficients."""
    return math.log(n_experts)
