"""The study's Fig. 4: expert activations (gating coefficients) over time, dense vs sparse.

The models are the trade-off sweep's dense (level 0) and sparse (``config.study.sparse_level``)
models of every seed, paired by seed (same initialisation and data order, so expert k is the same
expert in both). All of them are rolled out, nothing switched off, under the scenarios walk, run,
sit, jump and turn90 in one vmapped call. Per action (:func:`mann_jax.evaluate.gating.action_frames`)
and model: the mean gating profile and the mean entropy of the coefficients
(:mod:`mann_jax.evaluate.gating`). Findings (conclusion ``experts_keep_roles``):

* **same profiles**: per seed, the cosine similarity of the dense and the sparse mean profiles,
  averaged over the actions, must clear :data:`COSINE_THRESHOLD` (:func:`mann_jax.study.stats.agreement`);
* **slightly flatter when sparse**: the sparse models' entropy (per seed, averaged over the
  actions) is greater than the dense models' (Welch, :func:`mann_jax.study.stats.compare_means`).

Outputs in ``<workdir>/activations/``: the gating over time (the first seed; one panel per
scenario and model), the mean profiles and the similarity / entropy per action, as PNG + SVG.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from mann_jax.evaluate import gating as gating_lib
from mann_jax.evaluate.controller import run_scenarios, study_scenarios
from mann_jax.study import results, stats
from mann_jax.study.models import dense_and_sparse

EXPERIMENT = "activations"
TITLE = "Expert activations: dense vs sparse (study Fig. 4)"
SCENARIOS: tuple[str, ...] = ("walk", "run", "sit", "jump", "turn90")
COSINE_THRESHOLD = 0.9  # agreement: per-seed mean cosine similarity, mean - std above this


def _signed(s: dict[str, Any]) -> str:
    """``"+0.123 ± 0.045"`` of a :func:`mann_jax.study.stats.summary` (a difference)."""
    return f"{s['mean']:+.3f} ± {s['std']:.3f}"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(k: int) -> list[Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(k)]


def _series_figure(series: dict[str, dict[str, np.ndarray]], frames: dict[str, tuple[int, int]], scen: list[str],
                   *, fps: float, seed: int, sparse_level: float) -> Any:
    """Stacked gating coefficients over time: one row per scenario, dense | sparse."""
    plt = _plt()
    k = next(iter(series["dense"].values())).shape[-1]
    colors = _colors(k)
    fig, axes = plt.subplots(len(scen), 2, figsize=(11, 1.9 * len(scen) + 1.0), sharey=True, squeeze=False)
    for r, sc in enumerate(scen):
        for c, kind in enumerate(("dense", "sparse")):
            ax = axes[r, c]
            g = series[kind][sc]
            t = np.arange(len(g)) / fps
            ax.stackplot(t, g.T, colors=colors, labels=[f"expert {i}" for i in range(k)], linewidth=0)
            a, b = frames[sc]
            if (a, b) != (0, len(g)):
                ax.axvspan(a / fps, b / fps, color="k", alpha=0.08, lw=0)
            ax.set_xlim(0, t[-1] if len(t) > 1 else 1)
            ax.set_ylim(0, 1)
            title = "dense" if kind == "dense" else f"sparse {sparse_level:.0%}"
            ax.set_title(f"{sc} — {title}", fontsize=9)
            if c == 0:
                ax.set_ylabel("ω")
            if r == len(scen) - 1:
                ax.set_xlabel("time (s)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"Gating coefficients over time (seed {seed}; shaded: the frames of the action)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(k, 8), fontsize=8, frameon=False)
    return fig


def _profiles_figure(profiles: dict[str, dict[str, np.ndarray]], scen: list[str], *, sparse_level: float) -> Any:
    """Mean gating profile per action (bars: mean ± std over seeds), dense vs sparse."""
    plt = _plt()
    k = next(iter(profiles["dense"].values())).shape[-1]
    fig, axes = plt.subplots(1, len(scen), figsize=(2.6 * len(scen) + 1, 3.2), sharey=True, squeeze=False)
    x = np.arange(k)
    for ax, sc in zip(axes[0], scen):
        for off, kind, color in ((-0.2, "dense", "tab:blue"), (0.2, "sparse", "tab:orange")):
            p = profiles[kind][sc]
            ax.bar(x + off, p.mean(0), width=0.4, yerr=p.std(0, ddof=1) if len(p) > 1 else None, color=color,
                   label="dense" if kind == "dense" else f"sparse {sparse_level:.0%}", capsize=2)
        ax.set_xticks(x, [str(i) for i in x])
        ax.set_xlabel("expert")
        ax.set_title(sc)
    axes[0, 0].set_ylabel("mean ω over the action")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Mean gating profile per action (mean ± std over seeds)")
    fig.tight_layout()
    return fig


def _similarity_figure(cosine: dict[str, dict[str, Any]], entropy: dict[str, dict[str, dict[str, Any]]],
                       scen: list[str], *, max_entropy: float, sparse_level: float) -> Any:
    """Cosine similarity of the profiles per action; entropy dense vs sparse per action."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(scen))
    a1.bar(x, [cosine[s]["mean"] for s in scen], yerr=[cosine[s]["std"] for s in scen], color="tab:green", capsize=3)
    a1.axhline(COSINE_THRESHOLD, color="k", ls="--", lw=1, label=f"threshold {COSINE_THRESHOLD}")
    a1.set_xticks(x, scen)
    a1.set_ylim(0, 1.05)
    a1.set_ylabel("cosine similarity")
    a1.set_title("dense vs sparse mean profiles (per seed)")
    a1.legend(fontsize=8, loc="lower right")
    for off, kind, color in ((-0.2, "dense", "tab:blue"), (0.2, "sparse", "tab:orange")):
        a2.bar(x + off, [entropy[kind][s]["mean"] for s in scen], width=0.4,
               yerr=[entropy[kind][s]["std"] for s in scen], color=color, capsize=3,
               label="dense" if kind == "dense" else f"sparse {sparse_level:.0%}")
    a2.axhline(max_entropy, color="k", ls="--", lw=1, label="ln K (all equal)")
    a2.set_xticks(x, scen)
    a2.set_ylabel("mean entropy of ω (nats)")
    a2.set_title("entropy of the coefficients (higher = flatter)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


class _GatingStats(NamedTuple):
    """Per model kind ("dense", "sparse") and action: the per-seed gating statistics and their summaries."""
    profiles: dict[str, dict[str, np.ndarray]]  # kind -> action -> (n, K) mean coefficients
    entropy: dict[str, dict[str, np.ndarray]]  # kind -> action -> (n,) nats
    variation: dict[str, dict[str, np.ndarray]]  # kind -> action -> (n,)
    entropy_summary: dict[str, dict[str, dict[str, Any]]]
    variation_summary: dict[str, dict[str, dict[str, Any]]]
    cosine: dict[str, dict[str, Any]]  # action -> summary over seeds of the dense vs sparse cosine
    cos_per_seed: np.ndarray  # (n,) cosine averaged over the actions
    ent_per_seed: dict[str, np.ndarray]  # kind -> (n,) entropy averaged over the actions


def run(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
        progress: bool = True) -> dict[str, Any]:
    """Run the activations experiment; write ``<workdir>/activations/``; return the ``results.json`` payload."""
    t0 = time.time()
    fps, sl = float(config.study.fps), float(config.study.sparse_level)
    scs = study_scenarios(config.study, fps=fps, names=list(SCENARIOS))
    pair = dense_and_sparse(config, workdir, dataset=dataset, progress=progress)
    ro = run_scenarios(pair.models.fns, pair.params(), pair.dataset, scs, fps=fps)
    per_sc = gating_lib.scenario_gating(ro, fps=fps)
    scen, k, groups = [sc.name for sc in scs], int(np.shape(ro.result.gating)[-1]), pair.groups
    st = _gating_stats(per_sc, scen, groups)
    max_h = gating_lib.max_entropy(k)
    series = {kind: {sc: per_sc[sc]["series"][sl_.start] for sc in scen} for kind, sl_ in groups.items()}
    frames = {sc: (int(per_sc[sc]["frames"][0]), int(per_sc[sc]["frames"][1])) for sc in scen}
    out = Path(workdir) / EXPERIMENT
    figs = [
        results.save_figure(_series_figure(series, frames, scen, fps=fps, seed=pair.seeds[0], sparse_level=sl), out,
                            "gating_over_time"),
        results.save_figure(_profiles_figure(st.profiles, scen, sparse_level=sl), out, "mean_profiles"),
        results.save_figure(_similarity_figure(st.cosine, st.entropy_summary, scen, max_entropy=max_h,
                                               sparse_level=sl), out, "similarity_entropy"),
    ]
    data = {
        "fps": fps, "sparse_level": sl, "seeds": pair.seeds, "experts": k, "scenarios": scen,
        "max_entropy_nats": max_h, "action_frames": frames,
        "model_names": {kind: pair.names(kind) for kind in groups},
        "profiles": st.profiles, "entropy_nats": st.entropy, "cosine": st.cosine, "entropy": st.entropy_summary,
        "variation": st.variation_summary,
        "per_seed": {"cosine_mean_over_actions": stats.summary(st.cos_per_seed),
                     "entropy_dense_mean_over_actions": stats.summary(st.ent_per_seed["dense"]),
                     "entropy_sparse_mean_over_actions": stats.summary(st.ent_per_seed["sparse"])},
        "series_seed": pair.seeds[0], "series": series,
        "axes": {"profiles": "seed, expert", "entropy_nats": "seed", "series": "frame, expert (seed series_seed)",
                 "action_frames": "[start, stop) frames of the action in each scenario"},
    }
    return results.write_results(out, experiment=EXPERIMENT, title=TITLE, scale=results.scale_of(config),
                                 tables=_tables(st, scen, sparse_level=sl, n=len(pair.dense), k=k, max_h=max_h),
                                 figures=figs, findings=_findings(st, scen, sparse_level=sl, max_h=max_h),
                                 data=data, seconds=time.time() - t0, scalars=_scalars(st, series, scen))


def _gating_stats(per_sc: Mapping[str, Mapping[str, Any]], scen: list[str],
                  groups: Mapping[str, slice]) -> _GatingStats:
    """Split the per-scenario gating statistics by model kind; compare dense and sparse seed by seed."""
    profiles = {kind: {sc: per_sc[sc]["profile"][sl] for sc in scen} for kind, sl in groups.items()}
    entropy = {kind: {sc: per_sc[sc]["entropy"][sl] for sc in scen} for kind, sl in groups.items()}
    variation = {kind: {sc: per_sc[sc]["variation"][sl] for sc in scen} for kind, sl in groups.items()}
    cosine_values = {sc: gating_lib.cosine_similarity(profiles["dense"][sc], profiles["sparse"][sc]) for sc in scen}
    return _GatingStats(
        profiles=profiles, entropy=entropy, variation=variation,
        entropy_summary={kind: {sc: stats.summary(entropy[kind][sc]) for sc in scen} for kind in groups},
        variation_summary={kind: {sc: stats.summary(variation[kind][sc]) for sc in scen} for kind in groups},
        cosine={sc: stats.summary(np.atleast_1d(cosine_values[sc])) for sc in scen},
        cos_per_seed=np.nanmean(np.stack([np.atleast_1d(cosine_values[sc]) for sc in scen]), axis=0),
        ent_per_seed={kind: np.mean(np.stack([entropy[kind][sc] for sc in scen]), axis=0) for kind in groups})


def _findings(st: _GatingStats, scen: list[str], *, sparse_level: float, max_h: float) -> list[stats.Finding]:
    """Same profiles and flatter when sparse (``experts_keep_roles``); the gating's motion in each gait."""
    findings = [
        stats.Finding("experts_keep_roles",
                      f"The dense and the {sparse_level:.0%} sparse model activate the experts with the same profile "
                      f"in each action ({', '.join(scen)}): per seed, the cosine similarity of their mean gating "
                      f"profiles, averaged over the actions, exceeds {COSINE_THRESHOLD}.",
                      *stats.agreement(st.cos_per_seed, threshold=COSINE_THRESHOLD,
                                       what="cosine similarity of the mean profiles (mean over actions)")),
    ]
    verdict, evidence = stats.compare_means(st.ent_per_seed["sparse"], st.ent_per_seed["dense"], claim="greater")
    findings.append(stats.Finding(
        "experts_keep_roles",
        f"The sparse model's gating is slightly flatter: the entropy of its coefficients (nats, mean over the "
        f"actions; ln K = {max_h:.3f} is all experts equal) is greater than the dense model's.",
        verdict, f"sparse {evidence.replace(' vs ', ' vs dense ', 1)}"))
    for gait in [c for c in ("walk", "run") if c in scen]:
        verdict, evidence = stats.compare_means(st.variation["sparse"][gait], st.variation["dense"][gait],
                                                claim="less")
        findings.append(stats.Finding(
            None,
            f"While {'walking' if gait == 'walk' else 'running'}, the sparse model's gating moves less over time than "
            f"the dense model's (mean over experts of the standard deviation of the coefficients over the frames "
            f"after the first second; a gating that hands over between experts within each stride moves).",
            verdict, f"sparse {evidence.replace(' vs ', ' vs dense ', 1)}"))
    return findings


def _tables(st: _GatingStats, scen: list[str], *, sparse_level: float, n: int, k: int,
            max_h: float) -> list[dict[str, Any]]:
    """Similarity, entropy and variation per action; the mean profiles per model kind and action."""
    rows = []
    for sc in scen:
        diff = stats.summary(st.entropy["sparse"][sc] - st.entropy["dense"][sc])
        rows.append([sc, stats.fmt(st.cosine[sc], ".3f"), stats.fmt(st.entropy_summary["dense"][sc], ".3f"),
                     stats.fmt(st.entropy_summary["sparse"][sc], ".3f"), _signed(diff),
                     stats.fmt(st.variation_summary["dense"][sc], ".3f"),
                     stats.fmt(st.variation_summary["sparse"][sc], ".3f")])
    rows.append(["mean over actions", stats.fmt(stats.summary(st.cos_per_seed), ".3f"),
                 stats.fmt(stats.summary(st.ent_per_seed["dense"]), ".3f"),
                 stats.fmt(stats.summary(st.ent_per_seed["sparse"]), ".3f"),
                 _signed(stats.summary(st.ent_per_seed["sparse"] - st.ent_per_seed["dense"])), "", ""])
    table = results.table(
        f"Gating per action, dense vs sparse {sparse_level:.0%} (mean ± std over {n} seeds): cosine similarity of "
        f"the mean profiles; entropy of the coefficients (nats, ln K = {max_h:.3f}); their variation over time",
        ["action", "cosine similarity", "entropy dense", "entropy sparse", "sparse - dense", "variation dense",
         "variation sparse"], rows)
    profile_rows = [[kind, sc] + [stats.fmt(stats.summary(st.profiles[kind][sc][:, i]), ".3f") for i in range(k)]
                    for sc in scen for kind in st.profiles]
    profile_table = results.table("Mean gating profile per action (mean ± std over seeds)",
                                  ["model", "action"] + [f"expert {i}" for i in range(k)], profile_rows)
    return [table, profile_table]


def _scalars(st: _GatingStats, series: Mapping[str, Mapping[str, np.ndarray]],
             scen: list[str]) -> dict[int, dict[str, float]]:
    """TensorBoard: the first seed's gating over time (step = frame), the per-action summaries at step 0."""
    scalars: dict[int, dict[str, float]] = {}
    for kind in series:
        for sc in scen:
            for t, row in enumerate(series[kind][sc]):
                scalars.setdefault(t, {}).update({f"gating/{kind}/{sc}/expert_{i}": float(v)
                                                  for i, v in enumerate(row)})
    scalars.setdefault(0, {}).update({f"cosine/{sc}": st.cosine[sc]["mean"] for sc in scen})
    scalars[0].update({f"entropy/{kind}/{sc}": st.entropy_summary[kind][sc]["mean"]
                       for kind in st.entropy_summary for sc in scen})
    scalars[0].update({"cosine/mean_over_actions": float(np.mean(st.cos_per_seed)),
                       "entropy/dense/mean_over_actions": float(np.mean(st.ent_per_seed["dense"])),
                       "entropy/sparse/mean_over_actions": float(np.mean(st.ent_per_seed["sparse"]))})
    return scalars


def headline(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the command prints as its last (JSON) line, from :func:`run`'s results."""
    per_seed = res["data"]["per_seed"]
    return {"cosine_mean": per_seed["cosine_mean_over_actions"]["mean"],
            "entropy_dense_mean": per_seed["entropy_dense_mean_over_actions"]["mean"],
            "entropy_sparse_mean": per_seed["entropy_sparse_mean_over_actions"]["mean"]}
