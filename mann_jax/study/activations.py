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
from typing import Any

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


def run(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
        progress: bool = True) -> dict[str, Any]:
    """Run the activations experiment; write ``<workdir>/activations/``; return the ``results.json`` payload."""
    t0 = time.time()
    fps = float(config.study.fps)
    scs = study_scenarios(config.study, fps=fps, names=list(SCENARIOS))
    pair = dense_and_sparse(config, workdir, dataset=dataset, progress=progress)
    seeds, n, groups = pair.seeds, len(pair.dense), pair.groups
    ro = run_scenarios(pair.models.fns, pair.params(), pair.dataset, scs, fps=fps)
    per_sc = gating_lib.scenario_gating(ro, fps=fps)
    scen = [sc.name for sc in scs]
    k = int(np.shape(ro.result.gating)[-1])

    profiles = {kind: {sc: per_sc[sc]["profile"][sl] for sc in scen} for kind, sl in groups.items()}  # (n, K)
    entropy = {kind: {sc: per_sc[sc]["entropy"][sl] for sc in scen} for kind, sl in groups.items()}  # (n,)
    variation = {kind: {sc: per_sc[sc]["variation"][sl] for sc in scen} for kind, sl in groups.items()}  # (n,)
    variation_summary = {kind: {sc: stats.summary(variation[kind][sc]) for sc in scen} for kind in groups}
    cosine_values = {sc: gating_lib.cosine_similarity(profiles["dense"][sc], profiles["sparse"][sc]) for sc in scen}
    cosine = {sc: stats.summary(np.atleast_1d(cosine_values[sc])) for sc in scen}
    entropy_summary = {kind: {sc: stats.summary(entropy[kind][sc]) for sc in scen} for kind in groups}
    cos_per_seed = np.nanmean(np.stack([np.atleast_1d(cosine_values[sc]) for sc in scen]), axis=0)  # (n,)
    ent_per_seed = {kind: np.mean(np.stack([entropy[kind][sc] for sc in scen]), axis=0) for kind in groups}
    max_h = gating_lib.max_entropy(k)

    sl = float(config.study.sparse_level)
    findings = [
        stats.Finding("experts_keep_roles",
                      f"The dense and the {sl:.0%} sparse model activate the experts with the same profile in each "
                      f"action ({', '.join(scen)}): per seed, the cosine similarity of their mean gating profiles, "
                      f"averaged over the actions, exceeds {COSINE_THRESHOLD}.",
                      *stats.agreement(cos_per_seed, threshold=COSINE_THRESHOLD,
                                       what="cosine similarity of the mean profiles (mean over actions)")),
    ]
    verdict, evidence = stats.compare_means(ent_per_seed["sparse"], ent_per_seed["dense"], claim="greater")
    findings.append(stats.Finding(
        "experts_keep_roles",
        f"The sparse model's gating is slightly flatter: the entropy of its coefficients (nats, mean over the "
        f"actions; ln K = {max_h:.3f} is all experts equal) is greater than the dense model's.",
        verdict, f"sparse {evidence.replace(' vs ', ' vs dense ', 1)}"))
    for gait in [c for c in ("walk", "run") if c in scen]:
        verdict, evidence = stats.compare_means(variation["sparse"][gait], variation["dense"][gait], claim="less")
        findings.append(stats.Finding(
            None,
            f"While {'walking' if gait == 'walk' else 'running'}, the sparse model's gating moves less over time than "
            f"the dense model's (mean over experts of the standard deviation of the coefficients over the frames "
            f"after the first second; a gating that hands over between experts within each stride moves).",
            verdict, f"sparse {evidence.replace(' vs ', ' vs dense ', 1)}"))

    out = Path(workdir) / EXPERIMENT
    series = {kind: {sc: per_sc[sc]["series"][sl_.start] for sc in scen} for kind, sl_ in groups.items()}
    frames = {sc: (int(per_sc[sc]["frames"][0]), int(per_sc[sc]["frames"][1])) for sc in scen}
    figs = [
        results.save_figure(_series_figure(series, frames, scen, fps=fps, seed=seeds[0], sparse_level=sl), out,
                            "gating_over_time"),
        results.save_figure(_profiles_figure(profiles, scen, sparse_level=sl), out, "mean_profiles"),
        results.save_figure(_similarity_figure(cosine, entropy_summary, scen, max_entropy=max_h, sparse_level=sl),
                            out, "similarity_entropy"),
    ]

    rows = []
    for sc in scen:
        diff = stats.summary(entropy["sparse"][sc] - entropy["dense"][sc])
        rows.append([sc, stats.fmt(cosine[sc], ".3f"), stats.fmt(entropy_summary["dense"][sc], ".3f"),
                     stats.fmt(entropy_summary["sparse"][sc], ".3f"), _signed(diff),
                     stats.fmt(variation_summary["dense"][sc], ".3f"),
                     stats.fmt(variation_summary["sparse"][sc], ".3f")])
    rows.append(["mean over actions", stats.fmt(stats.summary(cos_per_seed), ".3f"),
                 stats.fmt(stats.summary(ent_per_seed["dense"]), ".3f"),
                 stats.fmt(stats.summary(ent_per_seed["sparse"]), ".3f"),
                 _signed(stats.summary(ent_per_seed["sparse"] - ent_per_seed["dense"])), "", ""])
    table = results.table(
        f"Gating per action, dense vs sparse {sl:.0%} (mean ± std over {n} seeds): cosine similarity of the mean "
        f"profiles; entropy of the coefficients (nats, ln K = {max_h:.3f}); their variation over time",
        ["action", "cosine similarity", "entropy dense", "entropy sparse", "sparse - dense", "variation dense",
         "variation sparse"], rows)
    profile_rows = [[kind, sc] + [stats.fmt(stats.summary(profiles[kind][sc][:, i]), ".3f") for i in range(k)]
                    for sc in scen for kind in groups]
    profile_table = results.table("Mean gating profile per action (mean ± std over seeds)",
                                  ["model", "action"] + [f"expert {i}" for i in range(k)], profile_rows)

    # TensorBoard: the first seed's gating over time (step = frame) and the per-action summaries at step 0.
    scalars: dict[int, dict[str, float]] = {}
    for kind in groups:
        for sc in scen:
            for t, row in enumerate(series[kind][sc]):
                scalars.setdefault(t, {}).update({f"gating/{kind}/{sc}/expert_{i}": float(v)
                                                  for i, v in enumerate(row)})
    scalars.setdefault(0, {}).update({f"cosine/{sc}": cosine[sc]["mean"] for sc in scen})
    scalars[0].update({f"entropy/{kind}/{sc}": entropy_summary[kind][sc]["mean"] for kind in groups for sc in scen})
    scalars[0].update({"cosine/mean_over_actions": float(np.mean(cos_per_seed)),
                       "entropy/dense/mean_over_actions": float(np.mean(ent_per_seed["dense"])),
                       "entropy/sparse/mean_over_actions": float(np.mean(ent_per_seed["sparse"]))})

    data = {
        "fps": fps, "sparse_level": sl, "seeds": seeds, "experts": k, "scenarios": scen,
        "max_entropy_nats": max_h, "action_frames": frames,
        "model_names": {kind: pair.names(kind) for kind in groups},
        "profiles": profiles, "entropy_nats": entropy, "cosine": cosine, "entropy": entropy_summary,
        "variation": variation_summary,
        "per_seed": {"cosine_mean_over_actions": stats.summary(cos_per_seed),
                     "entropy_dense_mean_over_actions": stats.summary(ent_per_seed["dense"]),
                     "entropy_sparse_mean_over_actions": stats.summary(ent_per_seed["sparse"])},
        "series_seed": seeds[0], "series": series,
        "axes": {"profiles": "seed, expert", "entropy_nats": "seed", "series": "frame, expert (seed series_seed)",
                 "action_frames": "[start, stop) frames of the action in each scenario"},
    }
    return results.write_results(out, experiment=EXPERIMENT, title=TITLE, scale=results.scale_of(config),
                                 tables=[table, profile_table], figures=figs, findings=findings, data=data,
                                 seconds=time.time() - t0, scalars=scalars)


def headline(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the command prints as its last (JSON) line, from :func:`run`'s results."""
    per_seed = res["data"]["per_seed"]
    return {"cosine_mean": per_seed["cosine_mean_over_actions"]["mean"],
            "entropy_dense_mean": per_seed["entropy_dense_mean_over_actions"]["mean"],
            "entropy_sparse_mean": per_seed["entropy_sparse_mean_over_actions"]["mean"]}
