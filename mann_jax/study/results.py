"""What every experiment writes: ``results.json`` (tables, figures, findings, every number), figures as
PNG + SVG, and TensorBoard events; :func:`read_results` reads it back for the report.

``results.json``::

    {"experiment": "tradeoff", "title": "...", "scale": {...}, "seconds": 812.4,
     "tables": [{"title": "...", "columns": [...], "rows": [[...], ...]}],
     "figures": ["skating_vs_sparsity.png", ...],      # each also as .svg beside it
     "findings": [{"conclusion": "sparsity_costs_quality", "claim": "...",
                   "verdict": "supported" | "contradicted" | "inconclusive", "evidence": "..."}],
     "notes": ["..."],                                   # optional: what a reader must know (the report shows them)
     "data": {...}}                                      # every number behind the tables and figures
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mann_jax.metric_writer import MetricWriter
from mann_jax.study.stats import Finding

#: The study's three conclusions, by key (findings name the one they bear on).
CONCLUSIONS: dict[str, str] = {
    "sparsity_costs_quality": "Motion quality degrades with sparsity: foot skating rises as the MANN is pruned "
                              "(study Fig. 1).",
    "pruned_beats_small_dense": "At the same number of non-zero parameters, the pruned large MANN generates better "
                                "motion than a dense smaller one: less foot skating, no 'frozen while turning' "
                                "(study Figs. 2-3).",
    "experts_keep_roles": "Pruning keeps the experts' roles: switching an expert off affects the same motions in the "
                          "dense and the 90 % sparse model, and the gating activations follow the same profiles, "
                          "slightly flatter when sparse (study Table 2, Fig. 4).",
}

RESULTS_FILE = "results.json"


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """A table for ``results.json`` (cells: numbers or strings)."""
    for r in rows:
        if len(r) != len(columns):
            raise ValueError(f"table {title!r}: a row has {len(r)} cells for {len(columns)} columns")
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}


def save_figure(fig: Any, out_dir: str | os.PathLike, stem: str) -> str:
    """Save a matplotlib figure as ``<stem>.png`` and ``<stem>.svg``; close it; return the PNG's name."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / f"{stem}.png", dpi=120)
    fig.savefig(out_dir / f"{stem}.svg")
    plt.close(fig)
    return f"{stem}.png"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None  # JSON has no NaN; null = not measured
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_results(out_dir: str | os.PathLike, *, experiment: str, title: str, scale: Mapping[str, Any],
                  tables: Sequence[dict[str, Any]], figures: Sequence[str], findings: Sequence[Finding],
                  data: Mapping[str, Any], seconds: float,
                  scalars: Mapping[int, Mapping[str, float]] | None = None,
                  notes: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``results.json`` (atomically: a crash never leaves half a file) and the TensorBoard run
    ``<out_dir>/tensorboard`` (``scalars`` by step, every figure as an image); return what was written.
    ``notes``: sentences the report prints under the experiment's heading (written only when given)."""
    import matplotlib.image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in figures:
        if not (out_dir / f).is_file():
            raise FileNotFoundError(f"{out_dir / f}: figure listed in the results but not written")
    for finding in findings:
        if finding.conclusion is not None and finding.conclusion not in CONCLUSIONS:
            raise ValueError(f"finding names an unknown conclusion {finding.conclusion!r}; known: {list(CONCLUSIONS)}")
    payload: dict[str, Any] = {"experiment": experiment, "title": title, "scale": dict(scale),
               "seconds": round(float(seconds), 1),
               "tables": list(tables), "figures": list(figures), "findings": [f.as_dict() for f in findings],
               "data": dict(data)}
    if notes:
        payload["notes"] = [str(n) for n in notes]
    path = out_dir / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    payload = _jsonable(payload)
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    with MetricWriter(out_dir / "tensorboard") as w:
        for step, values in sorted((scalars or {}).items()):
            w.write_scalars(int(step), {k: v for k, v in values.items() if v is not None and math.isfinite(v)})
        for f in figures:
            w.write_images(0, {Path(f).stem: matplotlib.image.imread(str(out_dir / f))[..., :3]})
    return payload


def write_experiment(out_dir: str | os.PathLike, config: ml_collections.ConfigDict, *, experiment: str, title: str,
                     started: float, tables: Sequence[dict[str, Any]], figures: Sequence[str],
                     findings: Sequence[Finding], data: Mapping[str, Any],
                     scalars: Mapping[int, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """:func:`write_results` of an experiment run with the study config ``config``: its scale
    (:func:`scale_of`) and the seconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return write_results(out_dir, experiment=experiment, title=title, scale=scale_of(config), tables=tables,
                         figures=figures, findings=findings, data=data, seconds=time.perf_counter() - started,
                         scalars=scalars)


def print_summary(res: Mapping[str, Any]) -> None:
    """Every table and finding of an experiment's results (as :func:`write_results` returns them), as text."""
    for t in res["tables"]:
        print(t["title"])
        widths = [max(len(str(c)), *(len(str(r[i])) for r in t["rows"])) for i, c in enumerate(t["columns"])]
        print("  ".join(str(c).rjust(w) for c, w in zip(t["columns"], widths)))
        for r in t["rows"]:
            print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))
    for f in res["findings"]:
        print(f"[{f['verdict']}] {f['claim']}\n    {f['evidence']}")


def read_results(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``results.json`` of an experiment folder.

    Raises:
      FileNotFoundError: no results there; ValueError: not valid JSON (the file is named).
    """
    path = Path(out_dir) / RESULTS_FILE
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def scale_of(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The scale of a study config, for the report: data, model, budget, seeds."""
    return {"data": config.data.source if config.data.source != "bvh" else f"bvh:{config.data.path}",
            "experts": int(config.model.n_experts), "hidden": list(config.model.hidden_sizes),
            "epochs": int(config.train.epochs), "batch_size": int(config.train.batch_size),
            "seeds": list(config.study.seeds), "pruning": {"schedule": config.pruning.schedule,
                                                          "scope": config.pruning.scope,
                                                          "update_every": int(config.pruning.update_every),
                                                          "end": float(config.pruning.end)}}
