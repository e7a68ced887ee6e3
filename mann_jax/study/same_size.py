"""Same-size comparison (study Figs. 2-3): a pruned large MANN against dense smaller ones.

For the base MANN (hidden ``H`` in every layer, ``config.model``) and each fraction ``f`` of
``config.study.same_size_fractions`` a dense MANN with hidden ``round(H·f)`` is trained, and the
base MANN is trained with pruning to the sparsity level at which it keeps **exactly** as many
non-zero (unmasked) parameters as the dense small model has parameters (:func:`matched_levels`).

Counting (from the real parameter trees, :func:`parameter_counts`): every parameter of both
models counts (gating network kernels and biases, expert weights ``alpha`` and biases ``beta``);
only the base model's prunable weights (the expert matrices, plus the gating kernels when
``pruning.include_gating``) are pruned. Global unstructured pruning at level ``s`` makes exactly
``round(float32(s)·N)`` zeros among the ``N`` prunable weights (:mod:`mann_jax.pruning.masks`), so
the level is ``zeros / N`` with ``zeros = P_base − P_small``, checked against
:func:`mann_jax.pruning.scoring.pruned_count`. At the study's 8 x 512 base (N = 5,550,080) the
dense 256 / 128 / 64 models match 59.52 %, 82.20 % and 91.76 % of the expert weights
(3,303,424, 4,561,920 and 5,092,864 zeros; the biases and the gating network stay dense).

Every model gets the same training budget (the config's epochs, batch size, data order; one
sweep per dense hidden size, one sweep ``same_size_pruned`` with all matched levels, each with
``config.study.seeds``). Measured per model, then mean ± std over seeds per pair: foot skating
while walking (scenario ``walk``), the "frozen while turning" fraction (``turn90``,
``turn180``), validation and test loss (the test clips are never used in training or model
selection), and the local bone error of replayed held-out windows. The pairs' non-zero counts
are checked on the TRAINED models' masks (an error if unequal) and recorded.

Outputs in ``<workdir>/same_size/``: ``results.json``, figures (PNG + SVG), TensorBoard, and
(``config.study.video``) a side-by-side MP4 + GIF of dense vs pruned turning per pair.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mann_jax import pruning
from mann_jax.config_errors import ConfigError
from mann_jax.evaluate.controller import ReplayWindows
from mann_jax.pruning.scoring import pruned_count
from mann_jax.study import results as results_lib
from mann_jax.study import stats
from mann_jax.study.evaluation import (
    METRICS,
    TURNS,
    Evaluation,
    evaluate_models,
    evaluation_data,
    evaluation_settings,
    replay_window_set,
)
from mann_jax.study.models import trained_models
from mann_jax.train import ModelFunctions, build_model

#: Name of the sweep of pruned base models (all matched levels).
PRUNED = "same_size_pruned"

# ----------------------------------------------------------------------------- counting


@dataclasses.dataclass(frozen=True)
class ParameterCounts:
    """Parameter counts of a MANN config, from its real parameter tree.

    Attributes:
      total: every parameter (gating, expert weights and biases).
      prunable: the weights pruning may zero (``prunable`` filter, global unstructured).
      per_leaf: entries per leaf path (``"layer0/alpha"`` ...).
    """

    total: int
    prunable: int
    per_leaf: dict[str, int]

    @property
    def unprunable(self) -> int:
        """Parameters pruning never touches (biases, gating unless included)."""
        return self.total - self.prunable


def parameter_counts(model_config: ml_collections.ConfigDict, *, prunable: str | None = None) -> ParameterCounts:
    """Counts of the MANN ``model_config`` builds (shapes via ``jax.eval_shape``: nothing is allocated).

    Args:
      model_config: a ``model`` config section.
      prunable: regex of the prunable leaves (:data:`mann_jax.pruning.EXPERTS` when None).
    """
    shapes = jax.eval_shape(lambda: ModelFunctions.of(build_model(model_config, seed=0)).params)
    # Zero-stride stand-ins: real ndim and shape, no memory.
    tree = jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), shapes)
    per_leaf = {pruning.path_string(p): int(np.prod(np.shape(leaf)))
                for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
    chosen = pruning.prunable_paths(tree, prunable if prunable is not None else pruning.EXPERTS)
    return ParameterCounts(total=sum(per_leaf.values()), prunable=sum(per_leaf[p] for p in chosen),
                           per_leaf=per_leaf)


@dataclasses.dataclass(frozen=True)
class SizeMatch:
    """A dense small MANN and the sparsity level at which the base MANN has as many non-zeros.

    Attributes:
      fraction: hidden-size fraction asked for.
      hidden: hidden units per layer of the dense small model (``round(base_hidden·fraction)``).
      dense_params: all parameters of the dense small model.
      base_hidden: hidden units per layer of the base model.
      base_params: all parameters of the base model.
      base_prunable: its prunable weights ``N``.
      zeros: weights to prune, ``base_params − dense_params``.
      level: target sparsity of the prunable weights; ``round(float32(level)·N) == zeros``.
    """

    fraction: float
    hidden: int
    dense_params: int
    base_hidden: int
    base_params: int
    base_prunable: int
    zeros: int
    level: float

    @property
    def pruned_nonzero(self) -> int:
        """Non-zero (unmasked) parameters of the pruned base model: equal to ``dense_params``."""
        return self.base_params - self.zeros

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "pruned_nonzero": self.pruned_nonzero}


def _with_hidden(model_config: ml_collections.ConfigDict, hidden: Sequence[int]) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(model_config.to_dict())
    cfg.hidden_sizes = tuple(int(h) for h in hidden)
    return cfg


def level_for_zeros(zeros: int, n: int) -> float:
    """A level ``s`` with ``round(float32(s)·n) == zeros`` exactly (the pruning's count rule).

    Raises:
      ValueError: ``zeros`` outside ``(0, n)``, or no float32 level hits it.
    """
    if not 0 < zeros < n:
        raise ValueError(f"cannot prune {zeros} of {n} weights: need 0 < zeros < {n}")
    candidate = np.float32(zeros / n)
    for _ in range(64):  # float32 steps towards the exact ratio, should zeros / n round badly
        if pruned_count(float(candidate), n) == zeros:
            return float(candidate)
        direction = np.float32(1.0) if pruned_count(float(candidate), n) < zeros else np.float32(0.0)
        candidate = np.nextafter(candidate, direction, dtype=np.float32)
    raise ValueError(f"no float32 sparsity level prunes exactly {zeros} of {n} weights")


def matched_levels(model_config: ml_collections.ConfigDict, fractions: Sequence[float], *,
                   prunable: str | None = None) -> list[SizeMatch]:
    """For each fraction, the dense small model and the exactly matching sparsity of the base model.

    Args:
      model_config: the base model's ``model`` config section (every hidden layer the same size).
      fractions: hidden-size fractions in (0, 1), e.g. ``(0.5, 0.25, 0.125)``.
      prunable: regex of the base model's prunable leaves (default the expert matrices).

    Raises:
      ValueError: hidden layers of different sizes; a fraction outside (0, 1), one whose dense
        model is not smaller than the base, one with fewer parameters than the base keeps when
        every prunable weight is gone, or two fractions giving the same hidden size.
    """
    hidden = tuple(int(h) for h in model_config.hidden_sizes)
    if not hidden or len(set(hidden)) != 1:
        raise ConfigError(f"the same-size comparison needs equal hidden sizes in every layer, got {hidden}")
    base_h = hidden[0]
    base = parameter_counts(model_config, prunable=prunable)
    out: list[SizeMatch] = []
    for f in fractions:
        f = float(f)
        if not 0.0 < f < 1.0:
            raise ConfigError(f"same-size fraction must lie in (0, 1), got {f}")
        h = int(round(base_h * f))
        if h < 1:
            raise ConfigError(f"fraction {f} of hidden {base_h} leaves no hidden unit")
        if h >= base_h:
            raise ConfigError(f"fraction {f} of hidden {base_h} gives hidden {h}: not smaller than the base model")
        small = parameter_counts(_with_hidden(model_config, (h,) * len(hidden)), prunable=prunable).total
        zeros = base.total - small
        if zeros <= 0:
            raise ConfigError(f"the dense hidden-{h} model has {small:,} parameters, not fewer than the base "
                             f"model's {base.total:,}")
        if zeros >= base.prunable:
            raise ConfigError(f"fraction {f}: the dense hidden-{h} model has {small:,} parameters, but the base "
                             f"hidden-{base_h} model keeps {base.unprunable:,} unprunable parameters (plus at "
                             f"least one prunable weight) however far it is pruned; use a larger fraction")
        level = level_for_zeros(zeros, base.prunable)
        if pruned_count(level, base.prunable) != zeros or base.total - zeros != small:  # pragma: no cover
            raise AssertionError(f"level {level} does not match {small} parameters")
        out.append(SizeMatch(fraction=f, hidden=h, dense_params=small, base_hidden=base_h, base_params=base.total,
                             base_prunable=base.prunable, zeros=zeros, level=level))
    hs = [m.hidden for m in out]
    if len(set(hs)) != len(hs):
        raise ConfigError(f"fractions {tuple(fractions)} give repeated hidden sizes {hs}")
    return out


def prunable_regex(config: ml_collections.ConfigDict) -> str:
    """The prunable-leaf regex training uses for ``config.pruning`` (unstructured, global only).

    Raises:
      ValueError: a granularity or scope whose counts are not ``round(s·N)`` over all prunable weights.
    """
    pc = config.pruning
    if pc.granularity != "unstructured" or pc.scope != "global":
        raise ConfigError(f"exact non-zero matching needs unstructured global pruning, got granularity "
                         f"{pc.granularity!r}, scope {pc.scope!r}")
    return pruning.EXPERTS_AND_GATING if pc.include_gating else pruning.EXPERTS


# ----------------------------------------------------------------------------- evaluation


# ----------------------------------------------------------------------------- the experiment


# Keys of the pairs' metrics shown in the table and written to TensorBoard.
_SHOWN = ("walk_skating_cm_per_frame", "walk_skating_support_cm_per_frame", "walk_lowest_paw_m",
          "turn90_frozen_fraction", "turn180_frozen_fraction", "val_loss", "test_loss", "replay_error_local_m")


def _figures(out: Path, pairs: list[dict[str, Any]], base_hidden: int) -> list[str]:
    """The PNG names of the skating, frozen-while-turning and loss figures (PNG + SVG written to ``out``)."""
    import matplotlib

    matplotlib.use("Agg")

    return [results_lib.save_figure(_skating_figure(pairs, base_hidden), out, "skating_vs_nonzero"),
            results_lib.save_figure(_frozen_figure(pairs, base_hidden), out, "frozen_while_turning"),
            results_lib.save_figure(_losses_figure(pairs, base_hidden), out, "losses_vs_nonzero")]


def _errorbars(ax: Any, pairs: list[dict[str, Any]], key: str, ylabel: str, base_hidden: int) -> None:
    """Draws ``key``'s mean ± std of dense and pruned against the non-zero count, seeds as dots."""
    x = np.asarray([p["match"]["dense_params"] for p in pairs], np.float64)
    for which, style, label in (("dense", "o-", "dense, smaller hidden"),
                                ("pruned", "s--", f"pruned, hidden {base_hidden}")):
        m = np.asarray([p[which]["metrics"][key]["mean"] for p in pairs], np.float64)
        s = np.asarray([p[which]["metrics"][key]["std"] for p in pairs], np.float64)
        ax.errorbar(x, m, yerr=s, fmt=style, capsize=4, label=label)
        for p, xi in zip(pairs, x):
            vals = np.asarray(p[which]["metrics"][key]["values"], np.float64)
            ax.plot(np.full(len(vals), xi), vals, ".", color="grey", alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("non-zero parameters")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _skating_figure(pairs: list[dict[str, Any]], base_hidden: int) -> Any:
    """The figure of walking skating (above y = 0 and above the own support) and paw height."""
    import matplotlib.pyplot as plt

    x = np.asarray([p["match"]["dense_params"] for p in pairs], np.float64)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, key, label in zip(axes, ("walk_skating_cm_per_frame", "walk_skating_support_cm_per_frame",
                                     "walk_lowest_paw_m"),
                              ("foot skating while walking (cm/frame)",
                               "skating while walking, above own support (cm/frame)",
                               "median lowest paw height while walking (m)")):
        _errorbars(ax, pairs, key, label, base_hidden)
        for p, xi in zip(pairs, x):
            ax.annotate(f"h{p['match']['hidden']} / {100 * p['match']['level']:.1f} %", (xi, ax.get_ylim()[0]),
                        fontsize=7, ha="center", va="bottom")
    fig.suptitle("Equal non-zero parameters: walking skating (above y = 0, the study's; above the own support, "
                 "hover-proof) and paw height (mean ± std over seeds, dots = seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def _frozen_figure(pairs: list[dict[str, Any]], base_hidden: int) -> Any:
    """The figure of the frozen-while-turning fractions, one panel of dense vs pruned bars per turn."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TURNS), figsize=(5 * len(TURNS), 4), squeeze=False)
    labels = [f"{p['match']['dense_params']:,}\n(h{p['match']['hidden']} vs {100 * p['match']['level']:.1f} %)"
              for p in pairs]
    for ax, turn in zip(axes[0], TURNS):
        _frozen_panel(ax, pairs, f"{turn}_frozen_fraction", base_hidden)
        ax.set_ylim(0.0, 1.05)
        ax.set_xticks(np.arange(len(pairs)), labels, fontsize=7)
        ax.set_ylabel("fraction of turning frames frozen")
        ax.set_title(f"frozen while turning: {turn} (mean ± std, dots = seeds)", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _frozen_panel(ax: Any, pairs: list[dict[str, Any]], key: str, base_hidden: int) -> None:
    """Draws the dense and pruned bars of ``key`` per pair, seeds as dots."""
    width = 0.38
    pos = np.arange(len(pairs))
    groups = (("dense", "dense, smaller hidden"), ("pruned", f"pruned, hidden {base_hidden}"))
    for k, (which, label) in enumerate(groups):
        m = [p[which]["metrics"][key]["mean"] for p in pairs]
        s = [p[which]["metrics"][key]["std"] for p in pairs]
        lo = np.minimum(s, m)  # the bars' error: mean ± std, cut at [0, 1]
        hi = np.minimum(s, 1.0 - np.asarray(m))
        ax.bar(pos + (k - 0.5) * width, m, width, yerr=[lo, hi], capsize=4, label=label)
        for i, p in enumerate(pairs):
            vals = np.asarray(p[which]["metrics"][key]["values"], np.float64)
            ax.plot(np.full(len(vals), pos[i] + (k - 0.5) * width), vals, "k.", alpha=0.6)


def _losses_figure(pairs: list[dict[str, Any]], base_hidden: int) -> Any:
    """The figure of validation loss, test loss and held-out replay error against the non-zero count."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, label in zip(axes, ("val_loss", "test_loss", "replay_error_local_m"),
                              ("validation loss (MSE)", "test loss (MSE, held-out clips)",
                               "held-out replay: local bone error (m)")):
        _errorbars(ax, pairs, key, label, base_hidden)
    fig.tight_layout()
    return fig


def _video(out: Path, pair: dict[str, Any], dense_ev: Evaluation, pruned_ev: Evaluation, base_hidden: int, *,
           fps: float) -> list[str]:
    """Side-by-side MP4 + GIF of the first seed's dense and pruned models turning 90 degrees."""
    from mann_jax.control import render

    tracks = []
    for ev, title in ((dense_ev, f"dense h{pair['match']['hidden']} ({pair['match']['dense_params']:,} params)"),
                      (pruned_ev, f"h{base_hidden} pruned {100 * pair['match']['level']:.1f} % "
                                  f"({pair['match']['pruned_nonzero']:,} non-zero)")):
        names = [s.name for s in ev.rollouts.scenarios]
        s = names.index("turn90")
        t = ev.rollouts.frames(s)
        r, m = ev.rollouts.result, ev.positions[0]
        tracks.append(render.Track(bones=np.asarray(r.bones[m, s, :t]),
                                   root_positions=np.asarray(r.root_positions[m, s, :t]),
                                   root_directions=np.asarray(r.root_directions[m, s, :t]), title=title,
                                   target_velocity=np.asarray(r.target_velocity[m, s, :t])))
    stride = 2
    frames = render.render_frames(tracks, fps=fps, stride=stride)
    stem = f"turn90_dense_h{pair['match']['hidden']}_vs_pruned"
    return render.write_videos(frames, out, stem, fps=fps / stride)


def _findings(pairs: list[dict[str, Any]], config: ml_collections.ConfigDict, base_hidden: int) -> list[stats.Finding]:
    """The ``pruned_beats_small_dense`` findings: per pair, pruned vs dense on skating, freezing and loss."""
    st = config.study
    out = []
    for p in pairs:
        m = p["match"]
        who = (f"At {m['dense_params']:,} non-zero parameters (seeds: {len(p['pruned']['seeds'])} vs "
               f"{len(p['dense']['seeds'])}), the hidden-{base_hidden} MANN pruned to {100 * m['level']:.2f} % of its "
               f"prunable weights")
        other = f"the dense hidden-{m['hidden']} MANN trained on the same budget"
        checks = (
            ("walk_skating_cm_per_frame",
             f"{who} skates less while walking ({st.walk_speed} m/s, {st.scenario_seconds} s; mean foot skating in "
             f"cm/frame) than {other}"),
            ("walk_skating_support_cm_per_frame",
             f"{who} skates less while walking, paw heights measured above its own support rather than y = 0 "
             f"(a paw hovering above 2.5 cm counts as skating-free above y = 0), than {other}"),
            ("frozen_fraction",
             f"{who} is frozen while turning on a smaller fraction of its turning frames (mean of the 90 and 180 "
             f"degree turns at {st.walk_speed} m/s) than {other}"),
            ("val_loss", f"{who} reaches a lower validation loss (MSE, normalised outputs) than {other}"),
        )
        for key, claim in checks:
            verdict, evidence = stats.compare_means(p["pruned"]["metrics"][key]["values"],
                                                    p["dense"]["metrics"][key]["values"], claim="less")
            out.append(stats.Finding(conclusion="pruned_beats_small_dense", claim=claim, verdict=verdict,
                                     evidence=f"pruned vs dense {key}: {evidence}"))
    return out


def _dense_overrides(config: ml_collections.ConfigDict, hidden: int, n_layers: int) -> dict[str, Any]:
    """The same-size dense model's settings: its hidden size, trained from scratch (a pretrained
    network of another size cannot start it) for ``study.same_size_dense_epochs`` when set."""
    overrides: dict[str, Any] = {"model.hidden_sizes": (hidden,) * n_layers, "train.init_from": ""}
    epochs = int(config.study.get("same_size_dense_epochs", 0))
    if epochs > 0:
        overrides["train.epochs"] = epochs
    return overrides


def run(config: ml_collections.ConfigDict, workdir: str | Path, *, dataset: Any = None,
        progress: bool = True) -> dict[str, Any]:
    """Trains (or reloads) the dense small and matched pruned models, evaluates and writes ``<workdir>/same_size/``.

    Returns:
      The ``results.json`` payload.

    Raises:
      ValueError: unmatchable fractions (:func:`matched_levels`), a non-global or structured pruning
        setup, or an empty evaluation split.
      RuntimeError: a trained pair's non-zero counts differ (never expected).
    """
    start = time.perf_counter()
    workdir = Path(workdir)
    out = workdir / "same_size"
    if dataset is None:
        from mann_jax.data.dataset import build_dataset

        dataset = build_dataset(config.data, progress=progress)
    matches = matched_levels(config.model, config.study.same_size_fractions, prunable=prunable_regex(config))
    base_hidden = int(config.model.hidden_sizes[0])
    windows = replay_window_set(config, dataset)
    pairs, evals = _pairs(config, workdir, matches, dataset, windows, progress=progress)
    figures = _figures(out, pairs, base_hidden)
    videos = _videos(out, pairs, evals, base_hidden, fps=float(config.study.fps)) if config.study.video else []
    data = _data(config, matches, windows, pairs, videos)
    title = "Same-size comparison: pruned large vs dense small MANN (study Figs. 2-3)"
    return results_lib.write_experiment(out, config, experiment="same_size", title=title, started=start,
                                        tables=_tables(pairs, config, base_hidden), figures=figures,
                                        findings=_findings(pairs, config, base_hidden), data=data,
                                        scalars=_scalars(pairs))


def _pairs(config: ml_collections.ConfigDict, workdir: Path, matches: list[SizeMatch], dataset: Any,
           windows: ReplayWindows, *,
           progress: bool) -> tuple[list[dict[str, Any]], list[tuple[Evaluation, Evaluation]]]:
    """Per matched pair, the dense and pruned models' measurements, and their evaluations (for the videos)."""
    pruned = trained_models(config, workdir, PRUNED, levels=[m.level for m in matches], dataset=dataset,
                            progress=progress)
    pruned_all = evaluate_models(pruned, range(len(pruned.levels)), dataset, config, windows)
    n_layers = len(config.model.hidden_sizes)
    pairs: list[dict[str, Any]] = []
    evals: list[tuple[Evaluation, Evaluation]] = []
    for m in matches:
        dense_name = f"dense_h{m.hidden}"
        dense = trained_models(config, workdir, dense_name, levels=(0.0,),
                               overrides=_dense_overrides(config, m.hidden, n_layers), dataset=dataset,
                               progress=progress)
        dense_ev = evaluate_models(dense, dense.indices(0.0), dataset, config, windows)
        pruned_ev = pruned_all.subset(pruned.indices(m.level))
        pairs.append(_pair(m, dense_name, dense_ev, pruned_ev))
        evals.append((dense_ev, pruned_ev))
    return pairs, evals


def _pair(m: SizeMatch, dense_name: str, dense_ev: Evaluation, pruned_ev: Evaluation) -> dict[str, Any]:
    """One pair's measurements, after checking the trained models' non-zero counts against the plan."""
    dense_counts = [int(v) for v in dense_ev.values["unmasked_params"]]
    pruned_counts = [int(v) for v in pruned_ev.values["unmasked_params"]]
    equal = all(c == m.dense_params for c in dense_counts + pruned_counts)
    if not equal:
        raise RuntimeError(f"same-size pair h{m.hidden}: trained non-zero counts differ from the plan "
                           f"{m.dense_params:,}: dense {dense_counts}, pruned {pruned_counts}")
    return {"match": m.as_dict(), "counts_equal": equal,
            "trained_unmasked_params": {"dense": dense_counts, "pruned": pruned_counts},
            "dense": evaluation_data(dense_ev, dense_name), "pruned": evaluation_data(pruned_ev, PRUNED)}


def _videos(out: Path, pairs: list[dict[str, Any]], evals: list[tuple[Evaluation, Evaluation]], base_hidden: int,
            *, fps: float) -> list[str]:
    """The names of the side-by-side videos of every pair (MP4 + GIF written to ``out``)."""
    videos: list[str] = []
    for p, (dense_ev, pruned_ev) in zip(pairs, evals):
        videos += _video(out, p, dense_ev, pruned_ev, base_hidden, fps=fps)
    return videos


def _tables(pairs: list[dict[str, Any]], config: ml_collections.ConfigDict, base_hidden: int) -> list[dict[str, Any]]:
    """The table of every pair's dense and pruned model (mean ± std over seeds)."""
    rows = []
    for p in pairs:
        for which in ("dense", "pruned"):
            hidden = p["match"]["hidden"] if which == "dense" else base_hidden
            level = 0.0 if which == "dense" else p["match"]["level"]
            rows.append([f"h{p['match']['hidden']}", which, hidden, round(100 * level, 2),
                         p["match"]["dense_params"]] + [stats.fmt(p[which]["metrics"][k], ".4f") for k in _SHOWN])
    return [results_lib.table("Dense smaller MANNs vs the pruned base MANN at equal non-zero parameters "
                              "(mean ± std over seeds)",
                              ["pair", "model", "hidden", "sparsity %", "non-zero params",
                               "walk skating cm/frame", "walk skating above support", "lowest paw m",
                               "frozen turn90", "frozen turn180", "val loss",
                               f"{config.study.eval_split} loss", "replay error m"], rows)]


def _scalars(pairs: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """TensorBoard scalars: the shown metrics' means of dense and pruned, at step = the pair's non-zero count."""
    scalars: dict[int, dict[str, float]] = {}
    for p in pairs:
        step = int(p["match"]["dense_params"])
        scalars[step] = {f"{which}/{k}": p[which]["metrics"][k]["mean"] for which in ("dense", "pruned")
                         for k in _SHOWN}
    return scalars


def _data(config: ml_collections.ConfigDict, matches: list[SizeMatch], windows: ReplayWindows,
          pairs: list[dict[str, Any]], videos: list[str]) -> dict[str, Any]:
    """The ``data`` of ``results.json``: the base model, the budget, the evaluation settings and the pairs."""
    st = config.study
    return {
        "fps": float(st.fps),
        "base": {"hidden": int(config.model.hidden_sizes[0]), "params": matches[0].base_params if matches else None,
                 "prunable": matches[0].base_prunable if matches else None,
                 "prunable_regex": prunable_regex(config)},
        "budget": {"epochs": int(config.train.epochs), "batch_size": int(config.train.batch_size),
                   "dense_epochs": int(st.get("same_size_dense_epochs", 0)) or int(config.train.epochs),
                   "init_from": str(config.train.get("init_from", "")), "seeds": list(st.seeds)},
        **evaluation_settings(config, windows),
        "metrics": METRICS,
        "counts_equal": all(p["counts_equal"] for p in pairs),
        "pairs": pairs,
        "videos": videos,
    }


def headline(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the command prints as its last (JSON) line, from :func:`run`'s results."""
    return {"videos": res["data"]["videos"], "counts_equal": res["data"]["counts_equal"],
            "pairs": [{"hidden": p["match"]["hidden"], "level": p["match"]["level"],
                       "nonzero": p["match"]["dense_params"],
                       "walk_skating": {w: p[w]["metrics"]["walk_skating_cm_per_frame"]["mean"]
                                        for w in ("dense", "pruned")},
                       "val_loss": {w: p[w]["metrics"]["val_loss"]["mean"] for w in ("dense", "pruned")}}
                      for p in res["data"]["pairs"]]}
