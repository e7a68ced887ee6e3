"""Expert ablation (study Table 2): conditions, masks, action checks, impacts, and the experiment's outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from configs import study as study_config
from mann_jax.control import scenarios as scenario_lib
from mann_jax.data import layout
from mann_jax.evaluate import ablation as abl
from mann_jax.evaluate.controller import run_scenarios, study_scenarios
from mann_jax.study import ablation_experiment as ablation_study
from mann_jax.study import models as models_lib

# The tests of the toy study (toy_study: models trained, then rolled out) and of the commands are slow.

FPS = 60.0


@pytest.fixture(scope="module")
def loaded(toy_study):
    """The trade-off models (loaded once) and the dense + sparse stack of the ablation."""
    config, workdir, dataset = toy_study
    models = models_lib.tradeoff_models(config, workdir, dataset=dataset, progress=False)
    idx = models.indices(0.0) + models.indices(config.study.sparse_level)
    return models, models.select(idx)


@pytest.fixture(scope="module")
def ablation_results(toy_study):
    config, workdir, dataset = toy_study
    return ablation_study.run(config, workdir, dataset=dataset, progress=False)


def test_conditions_are_none_then_each_expert_off():
    assert abl.condition_names(3) == ("none", "expert_0", "expert_1", "expert_2")
    m = abl.condition_masks(3)
    np.testing.assert_array_equal(m, [[1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match="at least 2 experts"):
        abl.condition_masks(1)


@pytest.mark.slow
def test_none_condition_equals_the_unmasked_model(toy_study, loaded):
    config, _, dataset = toy_study
    models, params = loaded
    scs = study_scenarios(config.study, fps=FPS, names=list(abl.SCENARIOS))
    plain = run_scenarios(models.fns, params, dataset, scs, fps=FPS).result
    none = run_scenarios(models.fns, params, dataset, scs, fps=FPS, expert_mask=abl.condition_masks(4)[0]).result
    # Equal up to float32 rounding, which an autoregressive rollout carries and grows from frame to
    # frame (a mask of ones is another program: XLA fuses the products differently, more so on newer
    # JAX); switching an expert off moves the coefficients by tenths.
    np.testing.assert_allclose(none.gating, plain.gating, atol=2e-3)
    np.testing.assert_allclose(none.bones, plain.bones, atol=5e-3)
    np.testing.assert_allclose(none.root_positions, plain.root_positions, atol=5e-3)


@pytest.mark.slow
def test_expert_off_condition_removes_that_expert_and_renormalises(toy_study, loaded):
    config, _, dataset = toy_study
    models, params = loaded
    scs = study_scenarios(config.study, fps=FPS, names=list(abl.SCENARIOS))  # same shapes: compiled once
    masks = abl.condition_masks(4)
    on = run_scenarios(models.fns, params, dataset, scs, fps=FPS, expert_mask=masks[0]).result.gating
    off = run_scenarios(models.fns, params, dataset, scs, fps=FPS, expert_mask=masks[2]).result.gating  # expert 1
    assert float(np.max(on[..., 1])) > 1e-3  # the expert did contribute, so switching it off is a change
    assert np.all(off[..., 1] == 0.0)
    np.testing.assert_allclose(off.sum(-1), 1.0, atol=1e-5)
    assert float(np.abs(off - on).max()) > 1e-3


def test_impact_is_relative_to_the_none_condition():
    rng = np.random.default_rng(0)
    base, other = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    values = np.stack([base, base, other])  # (C = 3, M = 2, X = 5): "expert_0" identical to "none"
    imp = abl.impact(values)
    assert imp.shape == (2, 2, 5)
    np.testing.assert_array_equal(imp[:, 0], 0.0)
    np.testing.assert_allclose(imp[:, 1], other - base)
    with pytest.raises(ValueError, match="none"):
        abl.impact(np.zeros((1, 2, 5)))


def test_impact_correlation():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 6))
    assert abl.impact_correlation(a, a) == pytest.approx(1.0)
    assert abl.impact_correlation(a, -a) == pytest.approx(-1.0)
    assert abl.impact_correlation(a, 2.0 * a + 3.0) == pytest.approx(1.0)  # ranks only
    assert abl.impact_correlation(a, a, centred=True) == pytest.approx(1.0)
    # A per-column shift is agreement for the flat rho, ignored by the centred one.
    shift = np.array([0, 10, 20, 30, 40, 50.0])
    noise = rng.normal(size=(4, 6))
    assert abl.impact_correlation(a + shift, noise + shift) > 0.8
    assert abl.impact_correlation(a + shift, noise + shift, centred=True) == pytest.approx(
        abl.impact_correlation(a, noise, centred=True))
    b = a.copy()
    b[0, 0] = np.nan  # left out, not propagated
    assert math.isfinite(abl.impact_correlation(a, b))
    assert math.isnan(abl.impact_correlation(a, np.ones_like(a)))
    with pytest.raises(ValueError, match="shapes"):
        abl.impact_correlation(a, a[:, :3])


@pytest.mark.slow
def test_action_thresholds_come_from_the_data(toy_study):
    config, _, dataset = toy_study
    t = abl.action_thresholds(dataset, contact_max_height=config.data.contact_max_height)
    assert t.airborne_above_m == config.data.contact_max_height
    original = ~np.asarray(dataset.mirrored)
    has = {s: bool((original & (dataset.styles == layout.STYLES.index(s))).any()) for s in ("Sit", "Lie")}
    for style, hips, below in (("Sit", t.sit_hips_m, t.sit_below_m), ("Lie", t.lie_hips_m, t.lie_below_m)):
        if not has[style]:
            assert hips is None and below is None
        else:
            assert below == pytest.approx(0.5 * (t.idle_hips_m + hips))
            assert min(hips, t.idle_hips_m) < below < max(hips, t.idle_hips_m)


def _thresholds(**kw) -> abl.ActionThresholds:
    base = dict(idle_hips_m=0.5, sit_hips_m=0.3, lie_hips_m=0.1, sit_below_m=0.4, lie_below_m=0.3,
                airborne_above_m=0.04)
    base.update(kw)
    return abl.ActionThresholds(**base)


def test_action_checks_on_constructed_motions():
    t = _thresholds()
    sit = scenario_lib.sit(idle_seconds=0.5, hold_seconds=1.0, fps=FPS)
    bones = np.zeros((sit.num_frames, layout.NUM_BONES, 3))
    bones[:, layout.BONES.index("Hips"), 1] = 0.5
    assert abl.check_action(sit, bones, {}, t, fps=FPS)["happens"] is False
    bones[sit.events["sit"] + 20:, layout.BONES.index("Hips"), 1] = 0.35  # sits down, below 0.4
    assert abl.check_action(sit, bones, {}, t, fps=FPS)["happens"] is True
    assert abl.check_action(sit, bones, {}, _thresholds(sit_below_m=None), fps=FPS)["happens"] is None
    bones[-1, 0, 0] = np.nan  # a broken rollout fails
    assert abl.check_action(sit, bones, {}, t, fps=FPS)["happens"] is False

    jump = scenario_lib.jump(speed=2.0, seconds=2.0, jump_at_seconds=0.5, jump_seconds=0.3, fps=FPS)
    bones = np.zeros((jump.num_frames, layout.NUM_BONES, 3))
    assert abl.check_action(jump, bones, {}, t, fps=FPS)["happens"] is False
    bones[jump.events["jump"] + 10, list(layout.PAW_INDICES), 1] = 0.1  # all paws off the ground
    assert abl.check_action(jump, bones, {}, t, fps=FPS)["happens"] is True
    bones[jump.events["jump"] + 10, layout.PAW_INDICES[0], 1] = 0.0  # one paw still down: not airborne
    assert abl.check_action(jump, bones, {}, t, fps=FPS)["happens"] is False

    turn = scenario_lib.turn90(speed=1.0, before_seconds=0.5, after_seconds=1.0, fps=FPS)
    bones = np.zeros((turn.num_frames, layout.NUM_BONES, 3))
    assert abl.check_action(turn, bones, {"final_heading_deg": 80.0}, t, fps=FPS)["happens"] is True
    assert abl.check_action(turn, bones, {"final_heading_deg": 10.0}, t, fps=FPS)["happens"] is False

    walk = scenario_lib.walk(speed=1.0, seconds=2.0, fps=FPS)
    bones = np.zeros((walk.num_frames, layout.NUM_BONES, 3))
    tracking = {"speed_after_1s": {"mean_m_per_s": 0.6, "commanded_m_per_s": 1.0}}
    assert abl.check_action(walk, bones, tracking, t, fps=FPS)["happens"] is True
    tracking["speed_after_1s"]["mean_m_per_s"] = 0.4
    assert abl.check_action(walk, bones, tracking, t, fps=FPS)["happens"] is False


def test_sparse_level_must_be_a_trained_level(tmp_path):
    cfg = study_config.get_config("toy")
    cfg.study.sparse_level = 0.7
    with pytest.raises(ValueError, match="sparse_level 0.7 is not among the trained levels"):
        ablation_study.run(cfg, tmp_path, progress=False)
    assert not (tmp_path / "models").exists()  # refused before training anything


@pytest.mark.slow
def test_ablation_writes_consistent_results(toy_study, ablation_results):
    config, workdir, dataset = toy_study
    res = ablation_results
    out = workdir / "ablation"
    assert res["experiment"] == "ablation" and (out / "results.json").is_file()
    assert set(res["figures"]) == {"impact_skating.png", "impact_skating_support.png", "impact_error.png",
                                   "action_failures.png"}
    for f in res["figures"]:
        assert (out / f).is_file() and (out / f).with_suffix(".svg").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    d = res["data"]
    n, k = len(config.study.seeds), config.model.n_experts
    assert d["seeds"] == list(config.study.seeds) and d["experts"] == k
    assert d["conditions"] == list(abl.condition_names(k)) and d["scenarios"] == list(abl.SCENARIOS)
    # Held-out replay: windows of the eval split only.
    test_clips = {c for c, s in zip(dataset.clip_names, dataset.clip_splits) if s == config.study.eval_split}
    assert d["replay_windows"]["split"] == "test" and set(d["replay_windows"]["clips"]) <= test_clips
    for kind in ("dense", "sparse"):
        m = d["models"][kind]
        sk = np.array(m["skating_cm_per_frame"], float)
        assert sk.shape == (k + 1, n, len(abl.SCENARIOS)) and np.isfinite(sk).all()
        imp = np.array(m["impact_skating"], float)
        assert imp.shape == (n, k, len(abl.SCENARIOS))
        np.testing.assert_allclose(imp, sk[1:].transpose(1, 0, 2) - sk[0][:, None], atol=1e-9)
        err = np.array(m["replay_error_m"], float)
        assert err.shape == (k + 1, n, len(d["styles"])) and (err > 0).all()
        assert np.array(m["impact_error"], float).shape == (n, k, len(d["styles"]))
        assert len(m["motion_metrics"]) == k + 1 and len(m["motion_metrics"][0]) == n
        # Sit is not measurable on the toy data (no Sit rows): null, not a failure.
        if d["thresholds"]["sit_below_m"] is None:
            assert all(v is None for v in np.array(m["action_happens"], object)[:, :, 3].ravel())
        sup = np.array(m["skating_support_cm_per_frame"], float)
        assert sup.shape == sk.shape and np.isfinite(sup).all()
    for key in ("skating", "skating_support", "error", "skating_centred", "skating_support_centred", "error_centred"):
        c = d["correlation"][key]
        assert len(c["values"]) == n
        assert all(v is None or -1.0 <= v <= 1.0 for v in c["values"])
    assert [f["conclusion"] for f in res["findings"]] == ["experts_keep_roles"] * 5
    assert "0.5" in res["findings"][0]["claim"]
    assert all(f["verdict"] in ("supported", "contradicted", "inconclusive") for f in res["findings"])
    assert res["findings"][0]["evidence"].startswith("Spearman rho")
