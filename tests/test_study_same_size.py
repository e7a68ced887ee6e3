"""Same-size comparison (mann_jax.study.same_size): exact non-zero matching and the toy-scale run."""

from __future__ import annotations

import json

import jax
import ml_collections
import numpy as np
import optax
import pytest

from configs import study
from mann_jax import pruning
from mann_jax.pruning.scoring import pruned_count
from mann_jax.study import same_size
from mann_jax.study.models import trained_models
from mann_jax.train import ModelFunctions, build_model

# The toy study's run, and the matching checked by pruning real trees (the study's 8 x 512 one), are slow.


def _real_params(model_config, hidden):
    cfg = ml_collections.ConfigDict(model_config.to_dict())
    cfg.hidden_sizes = tuple(hidden)
    return ModelFunctions.of(build_model(cfg, seed=0)).params


def _size(tree) -> int:
    return sum(int(np.size(a)) for a in jax.tree.leaves(tree))


def _pruner(params, prunable: str):
    """``level -> unmasked parameters`` after ONE global magnitude mask update of the real pruning
    wrapper on ``params`` (compiled once; the level goes into the state)."""
    sched = pruning.make_schedule("one_shot", start=0.0, end=0.0, total_steps=1)
    tx = pruning.prune(optax.sgd(0.0), target_sparsity=0.5, schedule=sched, prunable=prunable)
    state = tx.init(params)
    grads = jax.tree.map(np.zeros_like, params)
    masks_of = jax.jit(lambda st, p: tx.update(grads, st, p)[1].masks)

    def unmasked(level: float) -> int:
        masks = jax.tree.map(np.asarray, masks_of(pruning.with_target_sparsity(state, level), params))
        return int(sum(np.count_nonzero(m) if m.ndim else np.size(p)
                       for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks))))

    return unmasked


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["", "toy"])
def test_matched_levels_prune_real_trees_to_the_dense_count(arg):
    config = study.get_config(arg)
    matches = same_size.matched_levels(config.model, config.study.same_size_fractions)
    base = _real_params(config.model, config.model.hidden_sizes)
    H = config.model.hidden_sizes[0]
    pruned_unmasked = _pruner(base, pruning.EXPERTS)
    assert [m.hidden for m in matches] == [round(H * f) for f in config.study.same_size_fractions]
    for m in matches:
        small = _real_params(config.model, (m.hidden, m.hidden))
        assert m.dense_params == _size(small) and m.base_params == _size(base)
        assert m.base_prunable == sum(np.size(base[k]["alpha"]) for k in ("layer0", "layer1", "layer2"))
        assert pruned_count(m.level, m.base_prunable) == m.zeros == _size(base) - _size(small)
        # the real pruning wrapper, on the real base tree, at the matched level
        assert pruned_unmasked(m.level) == _size(small) == m.pruned_nonzero
    if arg == "":  # the study's 8 x 512 -> 256 / 128 / 64 (computed above from the trees)
        assert [m.hidden for m in matches] == [256, 128, 64]
        assert [m.dense_params for m in matches] == [2_259_712, 1_001_216, 470_272]
        np.testing.assert_allclose([m.level for m in matches], [0.59520, 0.82196, 0.91762], atol=5e-5)


@pytest.mark.slow
def test_matched_levels_with_gating_prunable():
    config = study.get_config("toy")
    (m,) = same_size.matched_levels(config.model, (0.5,), prunable=pruning.EXPERTS_AND_GATING)
    base = _real_params(config.model, config.model.hidden_sizes)
    gating_kernels = sum(np.size(base["gating"][k]["kernel"]) for k in base["gating"])
    assert m.base_prunable == sum(np.size(base[k]["alpha"]) for k in ("layer0", "layer1", "layer2")) + gating_kernels
    assert _pruner(base, pruning.EXPERTS_AND_GATING)(m.level) == m.dense_params


def test_level_for_zeros_is_exact_for_every_count():
    rng = np.random.default_rng(0)
    for n in (7, 54_976, 994_304, 5_550_080, 2**24):  # float32 levels reach every count up to n = 2**24
        for z in np.unique(np.r_[1, n - 1, rng.integers(1, n, 300)]):
            assert pruned_count(same_size.level_for_zeros(int(z), n), n) == z
    with pytest.raises(ValueError, match="0 < zeros"):
        same_size.level_for_zeros(0, 10)
    with pytest.raises(ValueError, match="no float32 sparsity level"):  # float32 steps of 64 weights here
        same_size.level_for_zeros(2**29 + 1, 2**30)


def test_unmatchable_fractions_are_clear_errors():
    config = study.get_config("toy")
    for f in (1.0, 1.5, 0.0, -0.5):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            same_size.matched_levels(config.model, (f,))
    with pytest.raises(ValueError, match="leaves no hidden unit"):
        same_size.matched_levels(config.model, (0.01,))
    with pytest.raises(ValueError, match="not smaller than the base"):
        same_size.matched_levels(config.model, (0.99,))  # round(16 * 0.99) = 16
    with pytest.raises(ValueError, match="repeated hidden sizes"):
        same_size.matched_levels(config.model, (0.5, 0.51))
    # a 1024-unit base keeps 2 x 1024 x K unprunable hidden biases: a 1-unit dense model has fewer parameters
    big = ml_collections.ConfigDict(config.model.to_dict())
    big.hidden_sizes = (1024, 1024)
    with pytest.raises(ValueError, match="unprunable"):
        same_size.matched_levels(big, (1 / 1024,))
    uneven = ml_collections.ConfigDict(config.model.to_dict())
    uneven.hidden_sizes = (16, 8)
    with pytest.raises(ValueError, match="equal hidden sizes"):
        same_size.matched_levels(uneven, (0.5,))
    local = study.get_config("toy")
    local.pruning.scope = "local"
    with pytest.raises(ValueError, match="global"):
        same_size.prunable_regex(local)


@pytest.mark.slow
def test_toy_run_writes_everything_and_trained_counts_match(toy_study, tmp_path):
    config, _, dataset = toy_study
    config = ml_collections.ConfigDict(config.to_dict())
    config.study.same_size_fractions = (0.5, 0.125)  # two pairs keep the test fast; the CLI runs all three
    workdir = tmp_path  # its own folder: other tests may run the default fractions in the shared one
    res = same_size.run(config, workdir, dataset=dataset, progress=False)
    out = workdir / "same_size"
    assert json.loads((out / "results.json").read_text()) == res
    assert set(res["figures"]) == {"skating_vs_nonzero.png", "frozen_while_turning.png", "losses_vs_nonzero.png"}
    for f in res["figures"]:
        for suffix in (".png", ".svg"):
            assert (out / f).with_suffix(suffix).stat().st_size > 1000
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert res["data"]["videos"] == [] and not list(out.glob("*.mp4"))  # toy: video off

    pairs = res["data"]["pairs"]
    assert [p["match"]["hidden"] for p in pairs] == [8, 2] and res["data"]["counts_equal"] is True
    matches = same_size.matched_levels(config.model, config.study.same_size_fractions)
    pruned = trained_models(config, workdir, same_size.PRUNED, levels=[m.level for m in matches], dataset=dataset,
                            progress=False)
    for p, m in zip(pairs, matches):
        dense = trained_models(config, workdir, f"dense_h{m.hidden}", levels=(0.0,),
                               overrides={"model.hidden_sizes": (m.hidden, m.hidden)}, dataset=dataset,
                               progress=False)
        # recount on the trained sweeps: every leaf's size, minus the masked entries
        n_dense = _size(jax.tree.map(lambda a: a[0], dense.params))
        for i in pruned.indices(m.level):
            masks = jax.tree.map(lambda a: np.asarray(a)[i], pruned.masks)
            params = jax.tree.map(lambda a: np.asarray(a)[i], pruned.params)
            unmasked = sum(np.count_nonzero(mk) if mk.ndim else np.size(pa)
                           for pa, mk in zip(jax.tree.leaves(params), jax.tree.leaves(masks)))
            assert unmasked == n_dense == m.dense_params
            assert np.count_nonzero(params["layer1"]["alpha"][~masks["layer1"]["alpha"]]) == 0  # pruned = exactly 0
        assert p["trained_unmasked_params"] == {"dense": [n_dense] * 3, "pruned": [n_dense] * 3}
        for which in ("dense", "pruned"):
            metrics = p[which]["metrics"]
            assert set(same_size.METRICS) <= set(metrics)
            for key in ("walk_skating_cm_per_frame", "turn90_frozen_fraction", "turn180_frozen_fraction",
                        "val_loss", "test_loss", "replay_error_local_m"):
                assert metrics[key]["n"] == len(config.study.seeds) == 3, key
                assert all(np.isfinite(metrics[key]["values"])), key
    findings = res["findings"]
    assert len(findings) == 4 * len(pairs)
    assert {f["conclusion"] for f in findings} == {"pruned_beats_small_dense"}
    assert all(f["verdict"] in ("supported", "contradicted", "inconclusive") for f in findings)
    assert res["tables"][0]["rows"][0][:2] == ["h8", "dense"]
