"""Expert activations (study Fig. 4): entropy, cosine similarity, action frames, and the experiment's outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mann_jax.control import scenarios as scenario_lib
from mann_jax.evaluate import gating
from mann_jax.study import activations

# The tests of the toy study (toy_study: models trained, then rolled out) and of the commands are slow.

FPS = 60.0


@pytest.fixture(scope="module")
def activation_results(toy_study):
    config, workdir, dataset = toy_study
    return activations.run(config, workdir, dataset=dataset, progress=False)


def test_entropy_of_one_hot_is_zero_and_of_uniform_is_log_k():
    for k in (2, 4, 8):
        one_hot = np.eye(k)
        np.testing.assert_array_equal(gating.entropy(one_hot), 0.0)
        assert gating.entropy(np.full(k, 1.0 / k)) == pytest.approx(math.log(k))
        assert gating.max_entropy(k) == pytest.approx(math.log(k))
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert gating.entropy(p) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    # Per frame, then averaged over frames; leading axes kept.
    series = np.stack([np.eye(4)[[0, 1]], np.full((2, 4), 0.25)])  # (2 runs, T = 2, K = 4)
    np.testing.assert_allclose(gating.mean_entropy(series), [0.0, math.log(4)])
    np.testing.assert_allclose(gating.mean_profile(series), [[0.5, 0.5, 0, 0], [0.25] * 4])


def test_temporal_variation():
    constant = np.tile([0.7, 0.1, 0.1, 0.1], (10, 1))
    assert gating.temporal_variation(constant) == pytest.approx(0.0)
    # Two experts handing over every other frame: each has std 0.5, the others 0.
    alternating = np.tile([[1.0, 0.0, 0, 0], [0.0, 1.0, 0, 0]], (5, 1))
    assert gating.temporal_variation(alternating) == pytest.approx((0.5 + 0.5) / 4)
    assert gating.temporal_variation(np.stack([constant, alternating])).shape == (2,)


def test_cosine_similarity():
    a = np.array([0.7, 0.1, 0.1, 0.1])
    assert gating.cosine_similarity(a, a) == pytest.approx(1.0)
    assert gating.cosine_similarity(a, 3 * a) == pytest.approx(1.0)
    assert gating.cosine_similarity([1, 0, 0], [0, 1, 0]) == pytest.approx(0.0)
    assert gating.cosine_similarity([1, 1, 0], [1, 0, 0]) == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(gating.cosine_similarity([0, 0, 0], a[:3]))
    batch = gating.cosine_similarity(np.stack([a, a[::-1]]), a)
    assert batch.shape == (2,) and batch[0] == pytest.approx(1.0) and batch[1] < 0.5


def test_action_frames():
    sit = scenario_lib.sit(idle_seconds=0.5, hold_seconds=1.0, fps=FPS)
    assert gating.action_frames(sit, fps=FPS) == (30, 90)
    jump = scenario_lib.jump(speed=2.0, seconds=3.0, jump_at_seconds=1.0, jump_seconds=0.5, fps=FPS)
    assert gating.action_frames(jump, fps=FPS) == (60, 150)  # the command plus 1 s
    short = scenario_lib.jump(speed=2.0, seconds=1.5, jump_at_seconds=0.75, jump_seconds=0.3, fps=FPS)
    assert gating.action_frames(short, fps=FPS) == (45, 90)  # clamped to the scenario
    turn = scenario_lib.turn90(speed=1.0, before_seconds=0.5, after_seconds=1.0, fps=FPS)
    assert gating.action_frames(turn, fps=FPS) == (30, 90)
    assert gating.action_frames(scenario_lib.walk(seconds=1.0, fps=FPS), fps=FPS) == (0, 60)


@pytest.mark.slow
def test_activations_write_consistent_results(toy_study, activation_results):
    config, workdir, _ = toy_study
    res = activation_results
    out = workdir / "activations"
    assert res["experiment"] == "activations" and (out / "results.json").is_file()
    assert set(res["figures"]) == {"gating_over_time.png", "mean_profiles.png", "similarity_entropy.png"}
    for f in res["figures"]:
        assert (out / f).is_file() and (out / f).with_suffix(".svg").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    d = res["data"]
    n, k = len(config.study.seeds), config.model.n_experts
    assert d["scenarios"] == list(activations.SCENARIOS) and d["experts"] == k
    assert d["max_entropy_nats"] == pytest.approx(math.log(k))
    for sc in d["scenarios"]:
        a, b = d["action_frames"][sc]
        for kind in ("dense", "sparse"):
            prof = np.array(d["profiles"][kind][sc])
            assert prof.shape == (n, k)
            np.testing.assert_allclose(prof.sum(-1), 1.0, atol=1e-5)
            ent = np.array(d["entropy_nats"][kind][sc])
            assert ent.shape == (n,) and np.all((ent >= 0) & (ent <= math.log(k) + 1e-9))
            series = np.array(d["series"][kind][sc])  # the first seed's gating over time
            assert series.shape[1] == k and 0 <= a < b <= len(series)
            np.testing.assert_allclose(series.sum(-1), 1.0, atol=1e-5)
            np.testing.assert_allclose(series[a:b].mean(0), prof[0], atol=1e-9)
            np.testing.assert_allclose(gating.mean_entropy(series[a:b]), ent[0], atol=1e-9)
        cos = d["cosine"][sc]
        assert cos["n"] == n and all(-1.0 - 1e-9 <= v <= 1.0 + 1e-9 for v in cos["values"])
        expected = [gating.cosine_similarity(p, q) for p, q in zip(d["profiles"]["dense"][sc],
                                                                    d["profiles"]["sparse"][sc])]
        np.testing.assert_allclose(cos["values"], expected, atol=1e-12)
    assert d["per_seed"]["cosine_mean_over_actions"]["n"] == n
    assert [f["conclusion"] for f in res["findings"]] == ["experts_keep_roles"] * 2 + [None] * 2  # + walk, run
    assert set(res["data"]["variation"]["dense"]) == set(res["data"]["scenarios"])
    assert "0.9" in res["findings"][0]["claim"]
    assert all(f["verdict"] in ("supported", "contradicted", "inconclusive") for f in res["findings"])
