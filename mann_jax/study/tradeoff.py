"""Sparsity against motion quality (study Fig. 1), with structured pruning on the same curve.

Models: the trade-off sweep (:func:`mann_jax.study.models.tradeoff_models`: ``study.levels`` x
``study.seeds``, unstructured global magnitude pruning on the one-cycle schedule, as the study)
and, beyond the study, the same levels with whole hidden neurons pruned
(``study.structured_levels``, granularity ``"neuron"``, scope ``study.structured_scope``; its 0 %
point is the unstructured sweep's dense model: same initialisation, data order and budget).

Measured per model (mean ± std over seeds per level):

* foot skating (cm/frame, all paws, height above y = 0: the study's definition) while walking
  and while turning abruptly (90° and 180° heading jumps), scripted from the same start pose;
* the same walking skating with paw heights taken above the rollout's own support (the lowest
  paw over 2 s) instead of y = 0, the median height of the lowest paw, and the walking speed:
  skating above y = 0 counts nothing for a paw higher than H = 2.5 cm, so a model whose paws
  hover "skates less" by that measure without planting its feet any better;
* "frozen while turning" fraction on the turns;
* validation and held-out test loss (MSE on normalised outputs), and the posture error of
  held-out clips replayed window by window (:mod:`mann_jax.evaluate.controller`);
* for the real dog data, the skating of the real flat-floor clips (measured both ways) as reference lines.

When the study starts from a trained network (``train.init_from``: the authors' AI4Animation
folder in ``configs/study.py:pretrained``), that network untouched is the study's dense reference
(:func:`mann_jax.study.models.reference_models`, labelled :data:`~mann_jax.study.models.REFERENCE_LABEL`):
measured exactly like every level (same scenarios, losses in the dataset's normalisation, held-out
replay windows), a row of the unstructured table, a line in every figure, ``data.reference`` in
results.json. The report says that it was trained on every clip, so the held-out clips are held
out from fine-tuning only.

Resuming: a model's measurements in an earlier results.json are reused, not recomputed, when the
model is the same (name, level, seed, non-zeros, validation loss) and so are the evaluation
settings (``data.evaluation_settings``: the ``study`` section, the data and its normalisation;
a results.json written before they were recorded is matched on its scale, split, scenarios,
metrics and replay windows). So adding the reference to a finished trade-off measures only the
reference (matched by the SHA-256 of the folder's files).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mann_jax.data.dataset import build_dataset
from mann_jax.evaluate import ground_truth_skating
from mann_jax.study import stats
from mann_jax.study.evaluation import EVAL_CHUNK, METRICS, SCENARIOS, evaluate_models, replay_window_set
from mann_jax.study.models import (
    REFERENCE,
    REFERENCE_LABEL,
    TrainedModels,
    reference_models,
    tradeoff_models,
    trained_models,
    weights_digest,
)
from mann_jax.study.results import read_results, save_figure, scale_of, table, write_results

STRUCTURED = "structured"


def model_rows(models: TrainedModels, dataset: Any, windows: Any,
               config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """Per model of ``models``: name, level, seed, size (from the sweep's table) and every metric of
    :func:`mann_jax.study.evaluation.evaluate_models`."""
    ev = evaluate_models(models, range(len(models.levels)), dataset, config, windows)
    out = []
    for i, row in enumerate(models.rows):
        out.append({"name": row["name"], "level": float(models.levels[i]), "seed": int(models.seeds[i]),
                    "nonzero": int(row["nonzero"]), "size_mb": float(row["size_mb"]), "mflops": float(row["mflops"]),
                    "train_loss": float(row["train_loss"]),
                    **{k: float(v[i]) for k, v in ev.values.items()}})
    return out


def _json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def evaluation_settings(config: ml_collections.ConfigDict, dataset: Any) -> dict[str, Any]:
    """What the measurements depend on besides the models: the ``study`` section, the data (its cache
    key) and its normalisation, the scenarios and metrics (JSON)."""
    h = hashlib.sha256()
    for a in dataset.normalisation:
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return _json({"study": config.study.to_dict(), "data": dataset.cache_key, "normalisation": h.hexdigest(),
                  "scenarios": list(SCENARIOS), "metrics": sorted(METRICS)})


def _windows_data(windows: Any, config: ml_collections.ConfigDict) -> dict[str, Any]:
    return _json({"count": int(windows.num_windows), "seconds": config.study.replay_window_seconds,
                  "clips": sorted({str(c) for c in windows.clips})})


def previous_data(out_dir: Path, config: ml_collections.ConfigDict, dataset: Any,
                  windows: Any) -> dict[str, Any] | None:
    """The ``data`` of an earlier ``results.json`` in ``out_dir`` measured under the same evaluation
    settings (None when there is none, it cannot be read, or the settings differ)."""
    try:
        res = read_results(out_dir)
    except (OSError, ValueError):
        return None
    data = res.get("data") if isinstance(res, dict) else None
    if not isinstance(data, dict):
        return None
    recorded = data.get("evaluation_settings")
    if recorded is not None:
        return data if recorded == evaluation_settings(config, dataset) else None
    # Written before the settings were recorded: matched on what it did record.
    same = (res.get("scale") == _json(scale_of(config)) and data.get("eval_split") == config.study.eval_split
            and data.get("scenarios") == list(SCENARIOS) and data.get("metrics") == METRICS
            and data.get("replay_windows") == _windows_data(windows, config))
    return data if same else None


def _same_number(a: Any, b: Any) -> bool:
    a = float("nan") if a is None else float(a)
    b = float("nan") if b is None else float(b)
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def reused_rows(previous: Mapping[str, Any] | None, key: str, models: TrainedModels) -> list[dict[str, Any]] | None:
    """The rows of ``models`` in ``previous[key]`` (its last ``len(models.rows)`` rows) when each is the same
    model (name, level, seed, non-zeros, the sweep's validation loss) with every metric measured; None
    otherwise. (Not the training loss: a sweep resumed from a checkpoint that predates its record has none.)"""
    old = previous.get(key) if previous else None
    n = len(models.rows)
    if not isinstance(old, list) or len(old) < n or n == 0:
        return None
    old = old[len(old) - n:]
    for r, row, level, seed in zip(old, models.rows, models.levels, models.seeds):
        if not (isinstance(r, dict) and r.get("name") == row["name"] and r.get("seed") == int(seed)
                and _same_number(r.get("level"), level) and r.get("nonzero") == int(row["nonzero"])
                and _same_number(r.get("val_loss"), row["val_loss"]) and all(k in r for k in METRICS)):
            return None
    return [{k: float("nan") if v is None else v for k, v in r.items()} for r in old]  # JSON null = NaN


def reference_row(config: ml_collections.ConfigDict, like: TrainedModels, dataset: Any, windows: Any,
                  previous: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The dense reference's row (the network of ``train.init_from`` untouched, measured like every
    model), or None when the study does not start from a network; reused from ``previous`` when that
    measured the same folder (SHA-256 of its files)."""
    folder = config.train.get("init_from", "")
    if not folder:
        return None
    digest = weights_digest(folder)
    old = previous.get("reference") if previous else None
    if isinstance(old, dict) and old.get("weights_sha256") == digest and all(k in old for k in METRICS):
        return dict(old)
    ref = reference_models(config, like, dataset=dataset, eval_chunk=EVAL_CHUNK)
    assert ref is not None
    row = model_rows(ref, dataset, windows, config)[0]
    row.update(name=REFERENCE, label=REFERENCE_LABEL, seed=None, folder=str(folder), weights_sha256=digest)
    return row


def reference_note(row: Mapping[str, Any]) -> str:
    """What the report says about the dense reference's held-out figures."""
    return (f"Dense reference: the {REFERENCE_LABEL} (`{row.get('folder', '')}`), measured exactly like every level "
            "(the same scenarios, losses in the same normalisation, the same held-out replay windows): a row of "
            "the unstructured table and a dash-dotted line in each figure. The authors trained it on all the dog "
            "clips, so the \"held-out\" clips are held out from fine-tuning only: for it, and for every "
            "fine-tuned level (each starts from it), the held-out test loss and posture error are not measured "
            "on motion the network has never seen.")


def _cell(value: Any) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"


def by_level(rows: list[dict[str, Any]], key: str) -> dict[float, dict[str, Any]]:
    """``{level: summary over seeds}`` of ``key``."""
    levels = sorted({r["level"] for r in rows})
    return {lv: stats.summary([r[key] for r in rows if r["level"] == lv]) for lv in levels}


#: The metrics in the tables and figures (keys of :data:`mann_jax.study.evaluation.METRICS`).
SHOWN = (("walk_skating_cm_per_frame", "skating walk (cm/frame)"),
         ("turn90_skating_cm_per_frame", "skating turn 90° (cm/frame)"),
         ("turn180_skating_cm_per_frame", "skating turn 180° (cm/frame)"),
         ("walk_skating_support_cm_per_frame", "skating walk, above own support (cm/frame)"),
         ("walk_lowest_paw_m", "lowest paw height, walk (m)"),
         ("frozen_fraction", "frozen while turning (90°, 180°)"),
         ("val_loss", "validation loss"), ("test_loss", "held-out test loss"),
         ("replay_error_local_m", "held-out posture error (m)"))


def _plot_curves(curves: dict[str, list[dict[str, Any]]], keys: list[tuple[str, str]], out_dir: Path, stem: str,
                 title: str, reference: dict[str, float] | None = None,
                 dense_reference: Mapping[str, Any] | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys):
        for (curve, rows), style in zip(curves.items(), ("o-", "s--")):
            s = by_level(rows, key)
            x = np.array(list(s)) * 100
            mean = np.array([v["mean"] for v in s.values()])
            std = np.array([v["std"] for v in s.values()])
            ax.errorbar(x, mean, yerr=std, fmt=style, capsize=3, label=curve)
        if reference is not None and "skating" in key:
            floor = "support" if "support" in key else "floor"
            ax.axhline(reference[floor], color="k", lw=1, ls=":", label=f"mocap (flat-floor clips, {floor})")
        value = None if dense_reference is None else dense_reference.get(key)
        if value is not None and math.isfinite(float(value)):
            ax.axhline(float(value), color="C3", lw=1.2, ls="-.", label=REFERENCE_LABEL)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_dir, stem)


#: The findings that a metric of the unstructured sweep rises with sparsity: (metric, conclusion, claim).
_RISING = (
    ("walk_skating_cm_per_frame", "sparsity_costs_quality",
     "Foot skating while walking rises with sparsity (unstructured, 0-90 %)."),
    ("turn90_skating_cm_per_frame", "sparsity_costs_quality",
     "Foot skating while turning 90° rises with sparsity (unstructured, 0-90 %)."),
    ("turn180_skating_cm_per_frame", "sparsity_costs_quality",
     "Foot skating while turning 180° rises with sparsity (unstructured, 0-90 %)."),
    ("frozen_fraction", "sparsity_costs_quality", "The character is frozen on more of its turning frames as sparsity "
     "rises (the study's 'static while turning' artefact)."),
    ("walk_skating_support_cm_per_frame", "sparsity_costs_quality", "Foot skating while walking, measured above the "
     "rollout's own support height (robust to hovering paws), rises with sparsity."),
    ("walk_lowest_paw_m", None, "The paws hover higher above the floor while walking as sparsity rises (which lowers "
     "skating measured above y = 0 without better contacts)."),
    ("val_loss", "sparsity_costs_quality", "Validation loss rises with sparsity."),
    ("replay_error_local_m", None, "The posture error on held-out clips rises with sparsity."),
)


def _models(config: ml_collections.ConfigDict, workdir: str | Path, dataset: Any,
            progress: bool) -> tuple[TrainedModels, TrainedModels | None]:
    """The unstructured sweep's models and the structured sweep's (None without ``study.structured_levels``)."""
    study = config.study
    unstructured = tradeoff_models(config, workdir, dataset=dataset, progress=progress)
    if not len(study.structured_levels):
        return unstructured, None
    neurons = {"pruning.granularity": "neuron", "pruning.scope": study.structured_scope}
    return unstructured, trained_models(config, workdir, STRUCTURED, levels=study.structured_levels,
                                        overrides=neurons, dataset=dataset, progress=progress)


def _measurements(config: ml_collections.ConfigDict, unstructured: TrainedModels, structured: TrainedModels | None,
                  dataset: Any, windows: Any, previous: Mapping[str, Any] | None
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of the unstructured and of the structured models (reused where ``previous`` has them)."""
    rows_u = reused_rows(previous, "models", unstructured) or model_rows(unstructured, dataset, windows, config)
    if structured is None:
        return rows_u, []
    # The structured curve starts at the unstructured dense model (same initialisation, data order, budget).
    return rows_u, [r for r in rows_u if r["level"] == 0.0] + (
        reused_rows(previous, "structured_models", structured) or model_rows(structured, dataset, windows, config))


def _mocap_skating(config: ml_collections.ConfigDict) -> dict[str, float] | None:
    """The real clips' skating (cm/frame) above y = 0 and above the own support; None unless the data is BVH."""
    if config.data.source != "bvh":
        return None
    return {floor: ground_truth_skating(config.data.path, floor=floor).clip_mean_cm_per_frame
            for floor in ("floor", "support")}


def _figures(curves: dict[str, list[dict[str, Any]]], out_dir: Path, mocap: dict[str, float] | None,
             dense_ref: Mapping[str, Any] | None) -> list[str]:
    """The figures' PNG names: skating, contact and frozen turning, losses and posture error against sparsity."""
    return [
        _plot_curves(curves, list(SHOWN[:3]), out_dir, "skating_vs_sparsity",
                     "Foot skating against sparsity (mean ± std over seeds)", mocap, dense_ref),
        _plot_curves(curves, list(SHOWN[3:6]), out_dir, "contact_vs_sparsity",
                     "Skating above the own support, paw height and frozen turning against sparsity", mocap,
                     dense_ref),
        _plot_curves(curves, list(SHOWN[6:]), out_dir, "loss_vs_sparsity",
                     "Validation, held-out test loss and held-out posture error against sparsity",
                     dense_reference=dense_ref),
    ]


def _level_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows per level: sparsity, size (its first model's) and each shown metric's mean ± std over seeds."""
    levels = sorted({r["level"] for r in rows})
    summaries = {key: by_level(rows, key) for key, _ in SHOWN}
    first = {lv: next(r for r in rows if r["level"] == lv) for lv in levels}
    return [[f"{lv:.0%}", first[lv]["nonzero"], round(first[lv]["size_mb"], 2), round(first[lv]["mflops"], 3)]
            + [stats.fmt(summaries[key][lv], ".4f") for key, _ in SHOWN] for lv in levels]


def _tables(config: ml_collections.ConfigDict, rows_u: list[dict[str, Any]], rows_s: list[dict[str, Any]],
            dense_ref: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The tables: unstructured (with the dense reference as last row) and, when measured, structured."""
    columns = ["sparsity", "non-zero", "Mb", "MFLOPs"] + [label for _, label in SHOWN]
    body = _level_rows(rows_u)
    if dense_ref is not None:
        body.append([REFERENCE_LABEL, dense_ref["nonzero"], round(dense_ref["size_mb"], 2),
                     round(dense_ref["mflops"], 3)] + [_cell(dense_ref.get(key)) for key, _ in SHOWN])
    tables = [table("Unstructured (the study's setting): mean ± std over seeds"
                    + ("; last row: the dense reference, one network" if dense_ref is not None else ""),
                    columns, body)]
    if rows_s:
        tables.append(table(f"Structured (whole neurons, {config.study.structured_scope}): mean ± std over seeds",
                            columns, _level_rows(rows_s)))
    return tables


def _findings(rows_u: list[dict[str, Any]], rows_s: list[dict[str, Any]]) -> list[stats.Finding]:
    """The findings: each :data:`_RISING` trend, then structured vs unstructured validation loss per level."""
    findings = []
    x = [r["level"] for r in rows_u]
    for key, conclusion, text in _RISING:
        verdict, evidence = stats.trend(x, [r[key] for r in rows_u], claim="increasing")
        findings.append(stats.Finding(conclusion, text, verdict, evidence))
    levels = {r["level"] for r in rows_u}
    for lv in sorted({r["level"] for r in rows_s} - {0.0}):
        if lv not in levels:
            continue
        a = [r["val_loss"] for r in rows_s if r["level"] == lv]
        b = [r["val_loss"] for r in rows_u if r["level"] == lv]
        verdict, evidence = stats.compare_means(a, b, claim="greater")
        findings.append(stats.Finding(None, f"At {lv:.0%} sparsity, structured (neuron) pruning reaches a higher "
                                      "validation loss than unstructured pruning (structured vs unstructured).",
                                      verdict, evidence))
    return findings


def _scalars(summaries: dict[str, dict[float, dict[str, Any]]],
             dense_ref: Mapping[str, Any] | None) -> dict[int, dict[str, float]]:
    """TensorBoard scalars per sparsity (%): the unstructured means; the dense reference's values at step 0."""
    scalars: dict[int, dict[str, float]] = {}
    for key, _ in SHOWN:
        for lv, s in summaries[key].items():
            scalars.setdefault(int(round(lv * 100)), {})[f"unstructured/{key}"] = s["mean"]
        if dense_ref is not None and dense_ref.get(key) is not None:
            scalars.setdefault(0, {})[f"reference/{key}"] = float(dense_ref[key])
    return scalars


def run(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
        progress: bool = True) -> dict[str, Any]:
    """Train (or reuse) the models, measure them, write ``<workdir>/tradeoff/`` and return the results."""
    start = time.perf_counter()
    out_dir = Path(workdir) / "tradeoff"
    if dataset is None:
        dataset = build_dataset(config.data, progress=progress)
    unstructured, structured = _models(config, workdir, dataset, progress)
    windows = replay_window_set(config, dataset)
    previous = previous_data(out_dir, config, dataset, windows)  # measurements to reuse (same models, settings)
    rows_u, rows_s = _measurements(config, unstructured, structured, dataset, windows, previous)
    dense_ref = reference_row(config, unstructured, dataset, windows, previous)
    mocap = _mocap_skating(config)
    curves = {"unstructured (global, the study)": rows_u}
    if structured is not None:
        curves[f"structured (neurons, {config.study.structured_scope})"] = rows_s
    figures = _figures(curves, out_dir, mocap, dense_ref)
    tables, findings = _tables(config, rows_u, rows_s, dense_ref), _findings(rows_u, rows_s)
    summaries = {key: by_level(rows_u, key) for key, _ in SHOWN}
    data = {"levels": sorted({r["level"] for r in rows_u}), "models": rows_u, "structured_models": rows_s,
            "summary": {key: {str(lv): s for lv, s in v.items()} for key, v in summaries.items()},
            "mocap_skating_cm_per_frame": mocap, "scenarios": list(SCENARIOS),
            "metrics": METRICS, "eval_split": config.study.eval_split,
            "replay_windows": _windows_data(windows, config),
            "reference": dense_ref, "evaluation_settings": evaluation_settings(config, dataset)}
    seconds = time.perf_counter() - start
    return write_results(out_dir, experiment="tradeoff", title="Sparsity vs motion quality (study Fig. 1)",
                         scale=scale_of(config), tables=tables, figures=figures, findings=findings, data=data,
                         seconds=seconds, scalars=_scalars(summaries, dense_ref),
                         notes=[reference_note(dense_ref)] if dense_ref is not None else [])


def headline(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the command prints as its last (JSON) line, from :func:`run`'s results."""
    summary = res["data"]["summary"]
    out = {"walk_skating": {k: v["mean"] for k, v in summary["walk_skating_cm_per_frame"].items()},
           "val_loss": {k: v["mean"] for k, v in summary["val_loss"].items()}}
    ref = res["data"].get("reference")
    if ref:
        out["reference"] = {k: ref.get(k) for k in ("walk_skating_cm_per_frame", "val_loss", "test_loss")}
    return out
