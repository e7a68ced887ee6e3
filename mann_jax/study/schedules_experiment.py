"""Pruning schedules compared at one sparsity on the same budget: one-cycle vs AGP vs one-shot.

Beyond the study (which prunes with one-cycle only). For each name in ``config.study.schedules``
a sweep ``schedule_<name>`` trains ``config.study.seeds`` models at ``config.study.schedule_level``
with ``pruning.schedule = <name>``; every other setting (epochs, batch size, data order,
learning-rate schedule, mask-update interval) is the config's, so the budgets are identical:

* ``one_cycle`` and ``agp`` (and any other gradual schedule) prune over the config's window
  ``[pruning.start, pruning.end]`` of training;
* ``one_shot`` sets ``pruning.start = pruning.end = config.study.one_shot_at``: the model trains
  dense for that fraction of the budget, is pruned to the full level in ONE mask update, and is
  fine-tuned with the mask fixed for the rest of the same budget.

Measured per model (mean ± std over seeds): validation and test loss (test clips are never used
in training or model selection), foot skating while walking and in the 90 degree turn, the local
bone error of replayed held-out windows, and the actual sparsity (checked against the exact
count ``round(level·N)``). Outputs in ``<workdir>/schedules/``: ``results.json``, the sparsity of
each schedule over training (``sparsity_over_training``) and bars of the metrics
(``metrics_by_schedule``), PNG + SVG, and TensorBoard. The findings compare one-cycle's validation
loss with each other schedule's (conclusion ``None``: not a claim of the study).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mann_jax.config_errors import ConfigError
from mann_jax.evaluate.controller import ReplayWindows
from mann_jax.pruning.scoring import pruned_count
from mann_jax.study import results as results_lib
from mann_jax.study import stats
from mann_jax.study.evaluation import (
    Evaluation,
    evaluate_models,
    evaluation_data,
    evaluation_settings,
    replay_window_set,
)
from mann_jax.study.models import trained_models
from mann_jax.train import make_pruning_schedule

#: Scenarios rolled out per model here.
SCENARIOS: tuple[str, ...] = ("walk", "turn90")
#: Metrics shown and summarised (keys of :data:`mann_jax.study.evaluation.METRICS`).
SHOWN: dict[str, str] = {
    "val_loss": "validation loss (MSE)",
    "test_loss": "test loss (MSE, held-out clips)",
    "walk_skating_cm_per_frame": "skating, walk (cm/frame)",
    "turn90_skating_cm_per_frame": "skating, 90 degree turn (cm/frame)",
    "replay_error_local_m": "held-out replay: local bone error (m)",
    "actual_sparsity": "actual sparsity (prunable weights)",
}
#: At most this many points of each sparsity curve go into the JSON and TensorBoard.
MAX_CURVE_POINTS = 400


def schedule_overrides(config: ml_collections.ConfigDict, name: str) -> dict[str, Any]:
    """Config overrides of the sweep of schedule ``name`` (see the module docstring for one-shot)."""
    overrides: dict[str, Any] = {"pruning.schedule": name}
    if name == "one_shot":
        at = float(config.study.one_shot_at)
        if not 0.0 <= at <= 1.0:
            raise ConfigError(f"study.one_shot_at must lie in [0, 1], got {at}")
        overrides.update({"pruning.start": at, "pruning.end": at})
    return overrides


def sparsity_curve(pruning_config: ml_collections.ConfigDict, *, level: float,
                   total_steps: int) -> dict[str, np.ndarray]:
    """Sparsity of the prunable weights over training, as the pruning wrapper applies it.

    Returns:
      ``{"step", "scheduled", "in_force"}``: per optimizer step ``c`` (0-based, the update's count),
      the scheduled sparsity ``level·schedule(c)`` and the sparsity of the masks in force after
      that update (set at the last mask-update step ``<= c``).
    """
    sched = make_pruning_schedule(pruning_config, total_steps=total_steps)
    steps = np.arange(total_steps)
    scheduled = np.asarray(jax.vmap(sched)(jnp.asarray(steps, jnp.int32)), np.float64) * float(np.float32(level))
    updates = np.asarray(jax.vmap(lambda c: sched.is_update_step(c, int(pruning_config.update_every)))(
        jnp.asarray(steps, jnp.int32)))
    last = np.maximum.accumulate(np.where(updates, steps, -1))
    in_force = np.where(last >= 0, scheduled[np.maximum(last, 0)], 0.0)
    return {"step": steps, "scheduled": scheduled, "in_force": in_force}


def _change_points(curve: dict[str, np.ndarray], limit: int) -> dict[str, Any]:
    """The in-force curve where it changes (plus the ends), evenly thinned to at most ``limit`` points."""
    v = curve["in_force"]
    keep = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    keep = np.unique(np.r_[keep, len(v) - 1])
    thinned = len(keep) > limit
    if thinned:
        keep = keep[np.linspace(0, len(keep) - 1, limit).round().astype(int)]
    return {"step": curve["step"][keep].tolist(), "sparsity": v[keep].tolist(), "thinned": bool(thinned),
            "changes": int(np.count_nonzero(v[1:] != v[:-1]))}


def _figures(out: Path, names: list[str], curves: dict[str, dict[str, np.ndarray]], summaries: dict[str, Any],
             total_steps: int, level: float) -> list[str]:
    """The PNG names of the sparsity-over-training and metrics-by-schedule figures (PNG + SVG written to ``out``)."""
    import matplotlib

    matplotlib.use("Agg")

    return [results_lib.save_figure(_sparsity_figure(names, curves, total_steps, level), out,
                                    "sparsity_over_training"),
            results_lib.save_figure(_metrics_figure(names, summaries, level), out, "metrics_by_schedule")]


def _sparsity_figure(names: list[str], curves: dict[str, dict[str, np.ndarray]], total_steps: int,
                     level: float) -> Any:
    """The figure of each schedule's sparsity over training: masks in force (steps) and scheduled (dashed)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        c = curves[name]
        x = c["step"] / max(total_steps - 1, 1)
        line, = ax.step(x, 100 * c["in_force"], where="post", label=f"{name} (masks in force)")
        ax.plot(x, 100 * c["scheduled"], "--", color=line.get_color(), alpha=0.5, lw=1)
    ax.axhline(100 * level, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("fraction of the training budget")
    ax.set_ylabel("sparsity of the prunable weights (%)")
    ax.set_title(f"Pruning schedules to {100 * level:g} % on the same budget ({total_steps} steps)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _metrics_figure(names: list[str], summaries: dict[str, Any], level: float) -> Any:
    """The figure of the :data:`SHOWN` metrics, one panel of bars per metric (mean ± std, seeds as dots)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    pos = np.arange(len(names))
    for ax, (key, label) in zip(axes.ravel(), SHOWN.items()):
        m = [summaries[n][key]["mean"] for n in names]
        s = [summaries[n][key]["std"] for n in names]
        ax.bar(pos, m, yerr=s, capsize=4, color=[f"C{i}" for i in range(len(names))], alpha=0.8)
        for i, n in enumerate(names):
            vals = np.asarray(summaries[n][key]["values"], np.float64)
            ax.plot(np.full(len(vals), pos[i]), vals, "k.", alpha=0.6)
        ax.set_xticks(pos, names)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"At {100 * level:g} % sparsity, same budget (mean ± std over seeds, dots = seeds)")
    fig.tight_layout()
    return fig


def run(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
        progress: bool = True) -> dict[str, Any]:
    """Trains (or reloads) one sweep per schedule at ``config.study.schedule_level``, evaluates, writes
    ``<workdir>/schedules/``.

    Returns:
      The ``results.json`` payload.

    Raises:
      ValueError: no schedules, a level outside (0, 1), a bad ``one_shot_at``, or an empty evaluation split.
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    out = workdir / "schedules"
    names, level = _names_and_level(config.study)  # checked before any data is built
    if dataset is None:
        from mann_jax.data.dataset import build_dataset

        dataset = build_dataset(config.data, progress=progress)
    windows = replay_window_set(config, dataset)
    per, curves, total_steps = _measurements(config, workdir, names, level, dataset, windows, progress=progress)
    summaries = {n: per[n]["metrics"] for n in names}
    figures = _figures(out, names, curves, summaries, total_steps, level)
    data = _data(config, names, level, windows, per, total_steps)
    title = "Pruning schedules: one-cycle vs AGP vs one-shot at the same sparsity and budget"
    return results_lib.write_experiment(out, config, experiment="schedules", title=title, started=start,
                                        tables=_tables(names, per, summaries, level, int(config.train.epochs)),
                                        figures=figures, findings=_findings(names, summaries, level), data=data,
                                        scalars=_scalars(names, per, summaries, total_steps))


def _data(config: ml_collections.ConfigDict, names: list[str], level: float, windows: ReplayWindows,
          per: dict[str, dict[str, Any]], total_steps: int) -> dict[str, Any]:
    """The ``data`` of ``results.json``: the level, the budget, the evaluation settings and each schedule's."""
    st = config.study
    return {
        "level": level,
        "budget": {"epochs": int(config.train.epochs), "batch_size": int(config.train.batch_size),
                   "total_steps": int(total_steps), "seeds": list(st.seeds)},
        "one_shot_at": float(st.one_shot_at),
        **evaluation_settings(config, windows),
        "metrics": SHOWN,
        "all_reach_target": all(all(per[n]["reaches_target"]) for n in names),
        "schedules": per,
    }


def _names_and_level(st: ml_collections.ConfigDict) -> tuple[list[str], float]:
    """The schedules to compare and their sparsity level, checked (:class:`ConfigError` otherwise)."""
    names = [str(n) for n in st.schedules]
    level = float(st.schedule_level)
    if not names:
        raise ConfigError("study.schedules is empty: nothing to compare")
    if len(set(names)) != len(names):
        raise ConfigError(f"study.schedules has duplicates: {names}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"study.schedule_level must lie in (0, 1), got {level}")
    return names, level


def _measurements(config: ml_collections.ConfigDict, workdir: Path, names: list[str], level: float, dataset: Any,
                  windows: ReplayWindows, *,
                  progress: bool) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]], int]:
    """Per schedule, its sweep's measurements and sparsity curve; and the budget in steps."""
    per: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    total_steps = 0
    for name in names:
        overrides = schedule_overrides(config, name)
        models = trained_models(config, workdir, f"schedule_{name}", levels=(level,), overrides=overrides,
                                dataset=dataset, progress=progress)
        ev = evaluate_models(models, models.indices(level), dataset, config, windows, scenario_names=SCENARIOS)
        total_steps = int(models.steps)  # one budget for every schedule (the same epochs and batch)
        curves[name] = sparsity_curve(models.config.pruning, level=level, total_steps=total_steps)
        n_prunable, zeros = _zeros(models.masks, ev)
        expected = pruned_count(level, n_prunable)
        pc = models.config.pruning
        sched = make_pruning_schedule(pc, total_steps=total_steps)
        per[name] = {
            "sweep": f"schedule_{name}", "overrides": overrides,
            "window": {"start": float(pc.start), "end": float(pc.end), "start_step": sched.start_step,
                       "end_step": sched.end_step, "update_every": int(pc.update_every)},
            **evaluation_data(ev, f"schedule_{name}"),
            "prunable_weights": n_prunable, "expected_zeros": expected, "zeros": zeros,
            "reaches_target": [z == expected for z in zeros],
            "sparsity_curve": _change_points(curves[name], MAX_CURVE_POINTS),
        }
    return per, curves, total_steps


def _zeros(masks: Any, ev: Evaluation) -> tuple[int, list[int]]:
    """The prunable weights per model, and the zeros of each evaluated model's masks among them."""
    masks = jax.tree.map(lambda m: np.asarray(m)[np.asarray(ev.indices)], masks)
    full = [m for m in jax.tree.leaves(masks) if m.ndim > 1]
    n_prunable = sum(int(np.prod(m.shape[1:])) for m in full)
    zeros = [sum(int(m[j].size - np.count_nonzero(m[j])) for m in full) for j in range(len(ev.indices))]
    return n_prunable, zeros


def _tables(names: list[str], per: dict[str, dict[str, Any]], summaries: dict[str, Any], level: float,
            epochs: int) -> list[dict[str, Any]]:
    """The table of each schedule's pruning window and :data:`SHOWN` metrics (mean ± std over seeds)."""
    rows = [[n, per[n]["window"]["start"], per[n]["window"]["end"]] + [stats.fmt(summaries[n][k], ".4f") for k in SHOWN]
            for n in names]
    return [results_lib.table(f"Pruning schedules at {100 * level:g} % sparsity, same budget "
                              f"({epochs} epochs, mean ± std over seeds)",
                              ["schedule", "window start", "window end"] + list(SHOWN.values()), rows)]


def _findings(names: list[str], summaries: dict[str, Any], level: float) -> list[stats.Finding]:
    """The findings (conclusion ``None``): one-cycle's validation loss lower than each other schedule's."""
    findings = []
    if "one_cycle" in names:
        for other in (n for n in names if n != "one_cycle"):
            verdict, evidence = stats.compare_means(summaries["one_cycle"]["val_loss"]["values"],
                                                    summaries[other]["val_loss"]["values"], claim="less")
            findings.append(stats.Finding(
                conclusion=None,
                claim=(f"At {100 * level:g} % sparsity on the same budget, one-cycle pruning ends with a lower "
                       f"validation loss than {other} pruning"),
                verdict=verdict, evidence=f"one_cycle vs {other} val_loss: {evidence}"))
    return findings


def _scalars(names: list[str], per: dict[str, dict[str, Any]], summaries: dict[str, Any],
             total_steps: int) -> dict[int, dict[str, float]]:
    """TensorBoard scalars: each schedule's sparsity curve, and its metrics' means at the last step."""
    scalars: dict[int, dict[str, float]] = {}
    for n in names:
        cp = per[n]["sparsity_curve"]
        for s, v in zip(cp["step"], cp["sparsity"]):
            scalars.setdefault(int(s), {})[f"sparsity/{n}"] = float(v)
        for k in SHOWN:
            scalars.setdefault(int(total_steps), {})[f"{k}/{n}"] = summaries[n][k]["mean"]
    return scalars


def headline(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the command prints as its last (JSON) line, from :func:`run`'s results."""
    per = res["data"]["schedules"]
    return {"level": res["data"]["level"], "all_reach_target": res["data"]["all_reach_target"],
            "val_loss": {n: v["metrics"]["val_loss"]["mean"] for n, v in per.items()},
            "test_loss": {n: v["metrics"]["test_loss"]["mean"] for n, v in per.items()}}
