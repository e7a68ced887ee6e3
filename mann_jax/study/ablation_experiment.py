"""The study's Table 2, made quantitative: switch each expert off in the dense and the sparse model.

The models are the trade-off sweep's (:func:`mann_jax.study.models.tradeoff_models`): the dense
one (level 0) and the sparse one (``config.study.sparse_level``) of every seed. The sparse model
of seed s was trained from the same initialisation and data order as the dense one of seed s, so
expert k is the same expert in both: their impact profiles are compared seed by seed.

For each model, every condition (nothing off, each expert off in turn) is measured by
:func:`mann_jax.evaluate.ablation.run_ablation`: foot skating and whether the action happens in
the scenarios walk, run, turn90, sit, lie, jump, and the posture error per style on the held-out
clips (``config.study.eval_split``). The impact of an expert is the rise of a metric when it is
off. Findings (conclusion ``experts_keep_roles``): per seed, Spearman's rho between the dense and
the sparse impact matrices (skating per scenario; held-out error per style), which must clear
:data:`RHO_THRESHOLD` (:func:`mann_jax.study.stats.agreement`). Outputs in ``<workdir>/ablation/``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mann_jax.evaluate import ablation as abl
from mann_jax.study import results, stats
from mann_jax.study.evaluation import replay_window_set
from mann_jax.study.models import dense_and_sparse

EXPERIMENT = "ablation"
TITLE = "Expert ablation: dense vs sparse (study Table 2)"
RHO_THRESHOLD = 0.5  # agreement: per-seed Spearman rho, mean - std above this
JACCARD_THRESHOLD = 0.5  # agreement: per-seed overlap of the actions broken, mean - std above this


def broken_overlap(happens_a: np.ndarray, happens_b: np.ndarray) -> float:
    """Jaccard index of the (expert, scenario) pairs whose action is broken in model a and in model b.

    Args:
      happens_a, happens_b: ``(C, S)`` 1 / 0 / NaN per condition (``"none"`` first) and scenario.

    Returns:
      |broken in both| / |broken in either|; NaN when neither model has a broken action. A pair is
      broken when the action happens with every expert on and not with the expert off.
    """
    def broken(h: np.ndarray) -> np.ndarray:
        h = np.asarray(h, np.float64)
        return (h[:1] == 1.0) & (h[1:] == 0.0)

    a, b = broken(happens_a), broken(happens_b)
    union = int((a | b).sum())
    return math.nan if union == 0 else float((a & b).sum()) / union


def _mean_std(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean and sample std (ddof 1; 0 for one value) along ``axis``."""
    v = np.asarray(values, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n = np.isfinite(v).sum(axis=axis)
        mean = np.nanmean(v, axis=axis)
        std = np.where(n > 1, np.nanstd(v, axis=axis, ddof=1) if v.shape[axis] > 1 else 0.0, 0.0)
    return mean, std


def _heatmaps(panels: list[tuple[str, np.ndarray]], rows: list[str], cols: list[str], *, title: str,
              cbar: str, fmt: str = "{:+.3f}", cmap: str = "RdBu_r", symmetric: bool = True) -> Any:
    """Side-by-side heat-maps (one per panel, shared colour scale), values written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = np.concatenate([m[np.isfinite(m)].ravel() for _, m in panels] + [np.zeros(1)])
    if symmetric:
        lim = float(np.abs(finite).max()) or 1.0
        vmin, vmax = -lim, lim
    else:
        vmin, vmax = 0.0, max(1.0, float(finite.max()))
    fig, axes = plt.subplots(1, len(panels), figsize=(0.75 * len(cols) * len(panels) + 3.0, 0.4 * len(rows) + 2.2),
                             squeeze=False, layout="constrained")
    im = None
    for ax, (name, m) in zip(axes[0], panels):
        im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(name)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m[i, j]
                strength = abs(v) / vmax if symmetric else (v - vmin) / (vmax - vmin)
                dark = bool(np.isfinite(v) and strength > 0.6)
                ax.text(j, i, "n/a" if not np.isfinite(v) else fmt.format(v), ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    assert im is not None  # one image per panel, and there are panels
    fig.colorbar(im, ax=axes[0].tolist(), label=cbar, shrink=0.9)
    fig.suptitle(title)
    return fig


def _condition_label(condition: str) -> str:
    return "nothing off" if condition == abl.NONE else condition.replace("expert_", "expert ") + " off"


def _count(happens: np.ndarray) -> str:
    """``"2/3"``: seeds in which the action happens out of those measured (``"n/a"``: none measured)."""
    measured = np.isfinite(happens)
    return "n/a" if not measured.any() else f"{int(np.nansum(happens))}/{int(measured.sum())}"


def _cell(mean: float, std: float, spec: str) -> str:
    return "n/a" if not math.isfinite(mean) else f"{mean:{spec}} ± {std:{spec.lstrip('+')}}"


def run(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
        progress: bool = True) -> dict[str, Any]:
    """Run the ablation experiment; write ``<workdir>/ablation/``; return the ``results.json`` payload."""
    t0 = time.time()
    pair = dense_and_sparse(config, workdir, dataset=dataset, progress=progress)
    result = abl.run_ablation(pair.models.fns, pair.params(), pair.dataset, config.study, fps=float(config.study.fps),
                              contact_max_height=float(config.data.contact_max_height),
                              windows=replay_window_set(config, pair.dataset), progress=progress)
    per = {kind: _per_model_kind(result, sl, pair.names(kind)) for kind, sl in pair.groups.items()}
    correlation = _correlations(per, len(pair.dense))
    failures = {kind: _failures(per[kind]["action_fail_fraction"], result) for kind in pair.groups}
    jaccard = [broken_overlap(per["dense"]["action_happens"][:, s], per["sparse"]["action_happens"][:, s])
               for s in range(len(pair.dense))]
    out = Path(workdir) / EXPERIMENT
    figures = _figures(per, result, config.study, out, len(pair.dense))
    scalars = _scalars(per, result, correlation)
    scalars[0]["broken_actions_jaccard"] = stats.summary(jaccard)["mean"]
    data = {
        "fps": float(config.study.fps), "sparse_level": float(config.study.sparse_level), "seeds": pair.seeds,
        "experts": result.num_experts, "conditions": list(result.conditions), "scenarios": list(result.scenarios),
        "styles": list(result.styles), "eval_split": str(config.study.eval_split),
        "replay_windows": result.windows, "thresholds": result.thresholds.as_dict(),
        "action_threshold": dict(zip(result.scenarios, result.action_threshold)),
        "models": per, "correlation": correlation, "broken_actions_jaccard": stats.summary(jaccard),
        "failures": failures, "axes": _AXES,
    }
    return results.write_results(out, experiment=EXPERIMENT, title=TITLE, scale=results.scale_of(config),
                                 tables=_tables(per, result, correlation, failures, pair.seeds),
                                 figures=figures, findings=_findings(config.study, correlation, jaccard, failures),
                                 data=data, seconds=time.time() - t0, scalars=scalars)


_AXES = {"skating_cm_per_frame": "condition, seed, scenario", "replay_error_m": "condition, seed, style",
         "action_happens": "condition, seed, scenario (1 / 0, null: not measured)",
         "skating_support_cm_per_frame": "condition, seed, scenario",
         "action_value": "condition, seed, scenario", "impact_skating(_support)": "seed, expert, scenario",
         "impact_error": "seed, expert, style", "impact_*_mean / _std": "expert, scenario or style",
         "action_fail_fraction": "condition, scenario", "motion_metrics / action_checks": "condition, seed"}


def _per_model_kind(result: abl.Ablation, sl: slice, names: list[str]) -> dict[str, Any]:
    """One model kind's (dense or sparse) measurements and impacts; ``sl`` selects its models."""
    skating, error, happens = result.skating[:, sl], result.replay_error[:, sl], result.happens[:, sl]
    skating_support = result.skating_support[:, sl]
    imp_sk, imp_err, imp_sup = abl.impact(skating), abl.impact(error), abl.impact(skating_support)  # (n, K, S|Y)
    fail = np.where(np.isfinite(happens), 1.0 - happens, np.nan)  # (C, n, S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an action never measured: NaN, not a warning
        fail_fraction = np.nanmean(fail, axis=1)  # (C, S)
    summaries: dict[str, np.ndarray] = {}
    for key, imp in (("impact_skating_support", imp_sup), ("impact_skating", imp_sk), ("impact_error", imp_err)):
        summaries[f"{key}_mean"], summaries[f"{key}_std"] = _mean_std(imp)
    models = range(sl.start, sl.stop)
    return {
        "names": names,
        "skating_cm_per_frame": skating, "skating_support_cm_per_frame": skating_support,
        "replay_error_m": error, "action_happens": happens, "action_value": result.action_value[:, sl],
        "impact_skating": imp_sk, "impact_skating_support": imp_sup, "impact_error": imp_err,
        **summaries,
        "action_fail_fraction": fail_fraction,
        "motion_metrics": [[result.metrics[c][m] for m in models] for c in range(len(result.conditions))],
        "action_checks": [[result.checks[c][m] for m in models] for c in range(len(result.conditions))],
    }


def _correlations(per: Mapping[str, Mapping[str, Any]], n: int) -> dict[str, Any]:
    """Dense vs sparse: Spearman's rho of the impact matrices per seed, plain and scenario-centred."""
    correlation: dict[str, Any] = {}
    for metric in ("skating", "skating_support", "error"):
        for centred in (False, True):
            rhos = [abl.impact_correlation(per["dense"][f"impact_{metric}"][s], per["sparse"][f"impact_{metric}"][s],
                                           centred=centred) for s in range(n)]
            correlation[metric + ("_centred" if centred else "")] = stats.summary(rhos)
    return correlation


def _failures(fail_fraction: np.ndarray, result: abl.Ablation) -> dict[str, list[str]]:
    """Per condition, the actions that fail in at least half of the seeds."""
    return {c: [s for j, s in enumerate(result.scenarios)
                if np.isfinite(fail_fraction[i, j]) and fail_fraction[i, j] >= 0.5]
            for i, c in enumerate(result.conditions)}


#: The rank agreements of the dense and sparse impact matrices: (correlation key, claim, what is compared).
_AGREEMENTS = (
    ("skating",
     "Switching an expert off raises foot skating in the same scenarios in the dense and the {sparse:.0%} sparse "
     "model: per seed, Spearman's rho between the two impact matrices (experts x scenarios) exceeds {threshold}.",
     "Spearman rho (skating impact, dense vs sparse)"),
    ("error",
     "Switching an expert off raises the held-out ({split}) posture error of the same styles in the dense and the "
     "sparse model: per seed, Spearman's rho between the two impact matrices (experts x styles) exceeds {threshold}.",
     "Spearman rho (held-out error impact, dense vs sparse)"),
    ("skating_support",
     "Switching an expert off raises foot skating measured above the rollout's own support (hover-proof: the sparse "
     "model's paws hover above the 2.5 cm skating height of the study's measure) in the same scenarios in the dense "
     "and the sparse model: per seed, Spearman's rho between the two impact matrices exceeds {threshold}.",
     "Spearman rho (skating-above-support impact, dense vs sparse)"),
    ("skating_centred",
     "Beyond how sensitive each scenario is, the same experts matter most in the dense and the sparse model: per "
     "seed, Spearman's rho of the skating impact matrices with each scenario's mean over experts removed exceeds "
     "{threshold}.",
     "Spearman rho (skating impact, scenario means removed)"),
)


def _findings(study: ml_collections.ConfigDict, correlation: Mapping[str, Any], jaccard: list[float],
              failures: Mapping[str, Mapping[str, list[str]]]) -> list[stats.Finding]:
    """The ``experts_keep_roles`` findings: the :data:`_AGREEMENTS`, then the overlap of the actions broken."""
    findings = [
        stats.Finding("experts_keep_roles",
                      claim.format(sparse=study.sparse_level, split=study.eval_split, threshold=RHO_THRESHOLD),
                      *stats.agreement(correlation[key]["values"], threshold=RHO_THRESHOLD, what=what))
        for key, claim, what in _AGREEMENTS]
    fail_text = "; ".join(f"{kind}: " + (", ".join(f"{_condition_label(c)} -> {'/'.join(v)}"
                                                   for c, v in failures[kind].items() if v) or "none")
                          for kind in failures)
    verdict, evidence = stats.agreement(jaccard, threshold=JACCARD_THRESHOLD,
                                        what="Jaccard index of the (expert, action) pairs broken, dense vs sparse")
    if not np.isfinite(jaccard).any():
        evidence += " (no action was broken by switching one expert off, in either model: nothing to compare)"
    findings.append(stats.Finding(
        "experts_keep_roles",
        f"Switching an expert off breaks the same actions in the dense and the sparse model (an action is broken "
        f"when it happens with every expert on and not with that expert off): per seed, the Jaccard index of the "
        f"broken (expert, action) pairs exceeds {JACCARD_THRESHOLD}.",
        verdict, evidence + f". Actions failing in at least half of the seeds, per condition: {fail_text}"))
    return findings


def _figures(per: Mapping[str, Mapping[str, Any]], result: abl.Ablation, study: ml_collections.ConfigDict,
             out: Path, n: int) -> list[str]:
    """Dense and sparse heat-maps side by side: the three impacts and the action failures."""
    experts = [f"expert {i}" for i in range(result.num_experts)]
    scen, styles = list(result.scenarios), list(result.styles)

    def panels(key: str) -> list[tuple[str, np.ndarray]]:
        return [(f"dense ({n} seeds)", per["dense"][key]), (f"sparse {study.sparse_level:.0%} ({n} seeds)",
                                                            per["sparse"][key])]

    specs: list[tuple[str, list[tuple[str, np.ndarray]], list[str], list[str], dict[str, Any]]] = [
        ("impact_skating", panels("impact_skating_mean"), experts, scen,
         dict(title="Rise in foot skating with one expert off (mean over seeds)", cbar="cm / frame")),
        ("impact_skating_support", panels("impact_skating_support_mean"), experts, scen,
         dict(title="Rise in foot skating above the own support with one expert off (mean over seeds)",
              cbar="cm / frame")),
        ("impact_error", panels("impact_error_mean"), experts, styles,
         dict(title=f"Rise in held-out ({study.eval_split}) posture error with one expert off",
              cbar="m", fmt="{:+.4f}")),
        ("action_failures", panels("action_fail_fraction"), ["none"] + experts, scen,
         dict(title="Fraction of seeds in which the action fails", cbar="fraction of seeds", fmt="{:.2f}",
              cmap="Reds", symmetric=False)),
    ]
    return [results.save_figure(_heatmaps(p, rows, cols, **kw), out, name) for name, p, rows, cols, kw in specs]


def _tables(per: Mapping[str, Mapping[str, Any]], result: abl.Ablation, correlation: Mapping[str, Any],
            failures: Mapping[str, Mapping[str, list[str]]], seeds: list[int]) -> list[dict[str, Any]]:
    """Impacts per expert, the per-seed rank correlations, and in how many seeds each action happens."""
    scen, styles, conds = list(result.scenarios), list(result.styles), list(result.conditions)
    rows = []
    for kind, p in per.items():
        for i in range(result.num_experts):
            rows.append([kind, i]
                        + [_cell(p["impact_skating_mean"][i, j], p["impact_skating_std"][i, j], "+.3f")
                           for j in range(len(scen))]
                        + [_cell(p["impact_error_mean"][i, j], p["impact_error_std"][i, j], "+.4f")
                           for j in range(len(styles))]
                        + [", ".join(failures[kind][conds[i + 1]]) or "-"])
    impact_table = results.table(
        "Impact of switching one expert off (mean ± std over seeds): rise in skating (cm/frame) per scenario, "
        "rise in held-out posture error (m) per style, actions that fail",
        ["model", "expert"] + [f"skating {s}" for s in scen] + [f"error {y}" for y in styles] + ["fails"], rows)
    rho_rows = [[key] + [None if not math.isfinite(v) else round(v, 4) for v in c["values"]] + [stats.fmt(c, ".3f")]
                for key, c in correlation.items()]
    rho_table = results.table("Dense vs sparse impact profiles: Spearman rho per seed",
                              ["impact matrix"] + [f"seed {s}" for s in seeds] + ["mean ± std"], rho_rows)
    act_rows = [[kind, c] + [_count(p["action_happens"][i, :, j]) for j in range(len(scen))]
                for kind, p in per.items() for i, c in enumerate(conds)]
    action_table = results.table("Seeds in which the action happens, per condition", ["model", "condition"] + scen,
                                 act_rows)
    return [impact_table, rho_table, action_table]


def _scalars(per: Mapping[str, Mapping[str, Any]], result: abl.Ablation,
             correlation: Mapping[str, Any]) -> dict[int, dict[str, float]]:
    """TensorBoard scalars: step 0 = nothing off, step k + 1 = expert k off (means over seeds)."""
    scen, styles = list(result.scenarios), list(result.styles)
    scalars: dict[int, dict[str, float]] = {}
    for kind, p in per.items():
        sk_mean = _mean_std(p["skating_cm_per_frame"], axis=1)[0]
        err_mean = _mean_std(p["replay_error_m"], axis=1)[0]
        for i in range(len(result.conditions)):
            d = scalars.setdefault(i, {})
            d.update({f"skating_cm_per_frame/{kind}/{s}": float(sk_mean[i, j]) for j, s in enumerate(scen)})
            d.update({f"replay_error_m/{kind}/{y}": float(err_mean[i, j]) for j, y in enumerate(styles)})
            d.update({f"action_fail_fraction/{kind}/{s}": float(p["action_fail_fraction"][i, j])
                      for j, s in enumerate(scen)})
    scalars[0].update({f"spearman_rho/{key}": c["mean"] for key, c in correlation.items()})
    return scalars


def headline(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the command prints as its last (JSON) line, from :func:`run`'s results."""
    return {"spearman_rho_mean": {k: v["mean"] for k, v in res["data"]["correlation"].items()},
            "broken_actions_jaccard_mean": res["data"]["broken_actions_jaccard"]["mean"]}
